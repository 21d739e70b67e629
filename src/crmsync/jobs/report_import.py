"""``salesforce-report-import``: refresh a reporting table from a Salesforce report.

Three sources (``source:``):

- ``report``: a saved report through the Reports and Dashboards REST API (``report_id``). The API
  returns at most 2,000 detail rows; a report with more fails the run with a message saying to
  use ``soql`` (nothing is written: a cut report would make the rest look missing);
- ``soql``: the report's equivalent SOQL query run through Bulk API 2.0 (CSV pages, any size);
- ``csv``: a CSV file (path relative to ``crmsync.yaml``) or an http(s) URL, e.g. what a team
  exports by hand, streamed: memory does not grow with its size.

Rows go into the reporting connection's table ``table`` (declared from ``columns`` and ``types``,
created and migrated by the connector), keyed by ``id_column``, in batches: each batch's rows are
read first, and only new rows and changed columns are written (so a second run writes nothing).
The summary counts rows **inserted**, **updated**, **unchanged** and **missing** (in the table but
not in the report; soft-deleted with ``delete_missing: true``). Seen ids are kept as 8-byte
hashes for the missing check, so 1,000,000 rows take 8 MB.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from array import array
from bisect import bisect_left
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from pydantic import Field, model_validator

from crmsync.connectors.base import Write
from crmsync.connectors.capabilities import Readable, ReportingTables, Reports, Writable
from crmsync.connectors.sql.settings import ColumnType
from crmsync.connectors.sql.tables import ColumnSpec, ObjectSpec
from crmsync.connectors.sql.values import coerce
from crmsync.errors import ConfigError, FixTheData
from crmsync.jobs.base import Job, JobContext, JobSettings
from crmsync.jobs.registry import job
from crmsync.jobs.sources import TooManyRows, csv_rows

#: how often (rows) the progress callback is told
PROGRESS_EVERY = 5000


class ReportFilter(JobSettings):
    column: str = Field(description="The report column, e.g. Opportunity.StageName.")
    operator: str = Field(description="equals, notEqual, lessThan, greaterThan, contains, …")
    value: str = Field(description="The value (equals/notEqual: comma-separated alternatives).")


class ReportImportSettings(JobSettings):
    source: Literal["report", "soql", "csv"] = Field(
        description="report: a saved report (Reports API, ≤2,000 rows); soql: a query through Bulk API 2.0 "
        "(any size); csv: a CSV file or URL."
    )
    connection: str | None = Field(None, description="The Salesforce connection (report and soql).")
    report_id: str | None = Field(None, description="The report's id, 00O… (source report).")
    filters: list[ReportFilter] = Field(
        default_factory=list, description="Filters added to the report's own (source report)."
    )
    query: str | None = Field(
        None, description="The SOQL query (source soql), e.g. SELECT Id, StageName … FROM Opportunity."
    )
    file: str | None = Field(
        None, description="Path (relative to crmsync.yaml) or http(s) URL of the CSV (source csv)."
    )
    encoding: str = Field("utf-8-sig", description="Text encoding of the CSV.")
    target: str = Field(description="The reporting connection (type sql) the table lives in.")
    table: str = Field(
        "opportunity", description="The object name of the table (prefix added by the connection)."
    )
    id_column: str = Field(description="The source column holding the record id (e.g. Opportunity ID, Id).")
    columns: dict[str, str] = Field(
        description="Table column → the source column it is read from (a report column's label or name, "
        "a query's field, a CSV header)."
    )
    types: dict[str, ColumnType] = Field(
        default_factory=dict,
        description="Table column → its type: text (default), number, integer, boolean, date, datetime, "
        "json.",
    )
    date_format: str | None = Field(
        None, description='strptime format of date and datetime texts that are not ISO, e.g. "%m/%d/%Y".'
    )
    delete_missing: bool = Field(
        False, description="Mark rows that are in the table but not in the report deleted (deleted_at)."
    )
    batch_size: int = Field(1000, ge=1, le=10_000, description="Rows compared and written at a time.")

    @model_validator(mode="after")
    def _source_needs(self) -> ReportImportSettings:
        needs = {"report": ("connection", "report_id"), "soql": ("connection", "query"), "csv": ("file",)}
        missing = [key for key in needs[self.source] if getattr(self, key) in (None, "")]
        if missing:
            raise ValueError(f"source {self.source!r} needs {' and '.join(missing)}")
        unknown = [c for c in self.types if c not in self.columns]
        if unknown:
            raise ValueError(f"types names columns that are not in columns: {', '.join(unknown)}")
        return self


class Counts:
    def __init__(self) -> None:
        self.read = self.inserted = self.updated = self.unchanged = self.missing = self.refused = 0

    def line(self, table: str) -> str:
        text = (
            f"{self.read} rows read into {table}: {self.inserted} inserted, {self.updated} updated, "
            f"{self.unchanged} unchanged, {self.missing} missing"
        )
        return text + (f", {self.refused} refused" if self.refused else "")


@job("salesforce-report-import")
class SalesforceReportImport(Job):
    """Refresh a reporting table from a Salesforce report, query export or CSV (a diff summary)."""

    Settings = ReportImportSettings

    def run(self, ctx: JobContext) -> str:
        s: ReportImportSettings = ctx.settings
        tables = ctx.connector(s.target, ReportingTables, "target")
        reader = ctx.connector(s.target, Readable, "target")
        writer = ctx.connector(s.target, Writable, "target")
        spec = ObjectSpec(
            s.table,
            tuple(ColumnSpec(c, s.types.get(c, "text")) for c in s.columns),
            source_system=s.connection or "csv",
        )
        tables.declare([spec])
        tables.prepare()
        rows = self._rows(ctx, s)
        had_rows = next(iter(reader.scan(s.table)), None) is not None
        counts = Counts()
        seen = array("q")
        batch: dict[str, dict[str, Any]] = {}
        for row in rows:
            counts.read += 1
            key = _text(row.get(s.id_column))
            if not key:
                raise FixTheData(f"row {counts.read}: no value in the id column {s.id_column!r}")
            batch[key] = self._values(spec, s, row, counts.read)
            if had_rows:
                seen.append(_digest(key))
            if len(batch) >= s.batch_size:
                self._flush(reader, writer, s.table, batch, counts)
                batch = {}
            if counts.read % PROGRESS_EVERY == 0:
                ctx.progress(counts.read, None, "rows")
        if batch:
            self._flush(reader, writer, s.table, batch, counts)
        ctx.progress(counts.read, counts.read, "rows")
        if had_rows:
            self._missing(ctx, reader, writer, s, seen, counts)
        summary = counts.line(s.table)
        ctx.logger.info("%s", summary)
        return summary

    def _rows(self, ctx: JobContext, s: ReportImportSettings) -> Iterator[Mapping[str, Any]]:
        if s.source == "csv":
            base = ctx.config.path.parent if ctx.config is not None and ctx.config.path else None
            return csv_rows(str(s.file), base_dir=base, encoding=s.encoding)
        assert s.connection is not None
        reports = ctx.connector(s.connection, Reports, f"source {s.source}")
        if s.source == "soql":
            return reports.export_query(str(s.query))
        run = reports.run_report(str(s.report_id), [f.model_dump() for f in s.filters])
        if not run.all_data:
            total = f" of its {run.total_rows:,}" if run.total_rows else ""
            raise TooManyRows(
                f"report {s.report_id} has more detail rows than the Reports API returns "
                f"(it answered {len(run.rows):,}{total}; at most {run.row_limit or 2000:,}): nothing was "
                "imported. Use `source: soql` with the report's query (e.g. SELECT Id, StageName, Amount, "
                "CloseDate FROM Opportunity WHERE …), which reads any number of rows through Bulk API 2.0, "
                "or narrow the report with `filters`."
            )
        return iter(run.rows)

    def _values(
        self, spec: ObjectSpec, s: ReportImportSettings, row: Mapping[str, Any], n: int
    ) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for column in spec.columns:
            source = s.columns[column.name]
            if source not in row:
                raise ConfigError(
                    f"row {n} has no column {source!r} (columns.{column.name}); it has: "
                    + ", ".join(sorted(str(k) for k in row))
                )
            value = row[source]
            if isinstance(value, str) and not value.strip():
                value = None
            if (
                value is not None
                and s.date_format
                and column.type in ("date", "datetime")
                and isinstance(value, str)
            ):
                try:
                    value = dt.datetime.strptime(value.strip(), s.date_format)
                except ValueError as exc:
                    raise FixTheData(f"row {n}, column {column.name}: {exc}") from None
            try:
                values[column.name] = coerce(column, value, check_length=False)
            except ValueError as exc:
                raise FixTheData(f"row {n}, column {column.name}: {exc}") from None
        return values

    def _flush(
        self,
        reader: Readable,
        writer: Writable,
        table: str,
        batch: dict[str, dict[str, Any]],
        counts: Counts,
    ) -> None:
        existing = {r.id: r for r in reader.read_records(table, list(batch))}
        writes: list[Write] = []
        for key, values in batch.items():
            have = existing.get(key)
            if have is None or have.deleted:
                counts.inserted += 1
                writes.append(Write(key, "upsert", values, target_id=key))
                continue
            changed = {c: v for c, v in values.items() if have.fields.get(c) != v}
            if changed:
                counts.updated += 1
                writes.append(Write(key, "upsert", changed, target_id=key))
            else:
                counts.unchanged += 1
        for start in range(0, len(writes), writer.max_batch_size(table)):
            chunk = writes[start : start + writer.max_batch_size(table)]
            for result in writer.write_batch(table, chunk):
                if not result.ok:
                    counts.refused += 1
                    if result.error is not None:
                        raise result.error

    def _missing(
        self,
        ctx: JobContext,
        reader: Readable,
        writer: Writable,
        s: ReportImportSettings,
        seen: array[int],
        counts: Counts,
    ) -> None:
        ordered = array("q", sorted(seen))
        gone: list[Write] = []
        for record in reader.scan(s.table):
            if record.deleted:
                continue
            digest = _digest(record.id)
            at = bisect_left(ordered, digest)
            if at < len(ordered) and ordered[at] == digest:
                continue
            counts.missing += 1
            if s.delete_missing:
                gone.append(Write(record.id, "delete", target_id=record.id))
        for start in range(0, len(gone), writer.max_batch_size(s.table)):
            writer.write_batch(s.table, gone[start : start + writer.max_batch_size(s.table)])
        if gone:
            ctx.logger.info("%d rows no longer in the report marked deleted", len(gone))


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _digest(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)
