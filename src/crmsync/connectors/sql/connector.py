"""``SqlConnector``: a reporting database as a flow's target (see :mod:`crmsync.connectors.base`).

The object name is a mapped object (``card``); its rows live in ``<prefix><object>`` and every
change is also appended to ``<prefix>events`` in the same transaction (:mod:`.tables`).

- :meth:`~SqlConnector.write_batch` upserts by the source's id (``target_id``, else
  ``external_id``, else the write's key); a delete sets ``deleted_at`` (rows are never removed).
  A write changes only the columns it carries and records one event with the old and new values
  of what changed — the event's own (``Write.changed`` / ``Write.previous``) when its source told
  them, whatever the row holds. The event's action, actor, time and delivery id come from the
  write's ``meta`` (:mod:`.changes`). Applying a write twice changes nothing: a delivery id already
  recorded is skipped, and a write that changes no value records no event (unless it carries a
  new delivery id: a comment or a no-op action still happened). One transaction per batch; when the database
  refuses it for one record's data, each record is retried in its own transaction so that only
  the bad one fails.
- :meth:`~SqlConnector.append_events` records events that change no table (a comment);
  :meth:`~SqlConnector.write_snapshot` replaces one day's workload snapshot.
- Tables are created and migrated by :meth:`~SqlConnector.prepare` (additive changes only), on
  first use at the latest. As a :class:`~crmsync.connectors.capabilities.PreparesSchema`, the
  engine declares them from the flows that write here (:meth:`~SqlConnector.prepare_schema`: the
  flow's field map names the columns, the source's describe types them) when it builds the
  connector and in ``crmsync check --connect``.
- As a :class:`~crmsync.connectors.capabilities.KeepsHistory`, it is handed every event of a
  record, even one that changes no column (a comment): it becomes a history row of its own.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any, ClassVar, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from crmsync.connectors.base import Connector, Record, Write, WriteResult
from crmsync.connectors.capabilities import KeepsHistory, PreparesSchema, Readable, TargetShape, Writable
from crmsync.connectors.sql import tables as schema
from crmsync.connectors.sql.changes import Event, PendingWrite, SnapshotRow, apply, pending_write, recorded
from crmsync.connectors.sql.engine import create_engine
from crmsync.connectors.sql.errors import classify
from crmsync.connectors.sql.settings import SqlConnection
from crmsync.connectors.sql.values import jsonable, utc_naive
from crmsync.errors import ConfigError, CrmsyncError, FixTheData

T = TypeVar("T")

MAX_BATCH = 500
PAGE_SIZE = 1000


class SqlConnector(Connector, Writable, Readable, PreparesSchema, KeepsHistory):
    """One reporting database, for one configured connection."""

    kind: ClassVar[str] = "sql"

    def __init__(
        self,
        name: str,
        *,
        settings: SqlConnection,
        objects: Sequence[schema.ObjectSpec] = (),
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        super().__init__(name)
        self.settings = settings
        self.engine: Engine = create_engine(settings)
        self.server_version: str | None = None
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._specs: dict[str, schema.ObjectSpec] = {}
        self._tables = schema.build_tables((), settings.table_prefix, settings.db_schema)
        self._prepared = False
        self._lock = threading.Lock()
        self.declare(objects)

    @classmethod
    def from_config(cls, name: str, conn: SqlConnection) -> SqlConnector:
        return cls(name, settings=conn)

    def __repr__(self) -> str:
        return f"SqlConnector({self.name!r}, url={self.settings.shown_url!r})"

    # -- tables ----------------------------------------------------------------------------------
    def declare(self, objects: Iterable[schema.ObjectSpec]) -> None:
        """Add (or replace) mapped objects; their tables are migrated by the next :meth:`prepare`."""
        with self._lock:
            for spec in objects:
                overrides = self.settings.column_types.get(spec.name, {})
                columns = tuple(
                    replace(
                        c, type=overrides[c.name], length=c.length if overrides[c.name] == "text" else None
                    )
                    if c.name in overrides
                    else c
                    for c in spec.columns
                )
                self._specs[spec.name] = replace(spec, columns=columns)
            self._tables = schema.build_tables(
                list(self._specs.values()), self.settings.table_prefix, self.settings.db_schema
            )
            self._prepared = False

    def prepare_schema(self, shapes: Sequence[TargetShape], *, apply: bool = True) -> list[str]:
        """Declare a table per object the flows write (columns from their field maps, typed by their
        sources' describes) and, with ``apply``, create or migrate them; what changed, in words.
        :class:`.tables.SchemaRefused` (a ConfigError listing each refused change) else."""
        merged: dict[str, tuple[dict[str, str], dict[str, Any], str]] = {}
        for shape in shapes:
            fields, described, _ = merged.setdefault(shape.object_name, ({}, {"fields": []}, shape.source))
            fields.update(shape.fields)
            described["fields"].extend((shape.describe or {}).get("fields", []))
        self.declare(
            schema.spec_from_describe(
                name,
                fields,
                described,
                source_system=source,
            )
            for name, (fields, described, source) in merged.items()
        )
        if apply:
            return [str(change) for change in self.prepare().changes]
        planned = self.plan()
        if planned.problems:
            raise schema.SchemaRefused(
                f"the reporting tables need {len(planned.problems)} destructive change(s) crmsync will "
                "not make: " + "; ".join(planned.problems),
                problems=planned.problems,
            )
        return [str(change) for change in planned.changes]

    def keeps_history(self) -> bool:
        return True

    def plan(self) -> schema.Plan:
        """The changes :meth:`prepare` would make, and the destructive ones it would refuse."""
        return self._run(lambda conn: schema.plan(conn, self._tables), write=False)

    def prepare(self) -> schema.Plan:
        """Create and migrate the tables (additive changes only); :class:`.tables.SchemaRefused` else."""
        with self._lock:
            tables = self._tables
            try:
                done = self._run(lambda conn: schema.migrate(conn, tables))
            except schema.SchemaRefused:
                raise
            except CrmsyncError:
                # e.g. another process created a table or column meanwhile: look again, once
                done = self._run(lambda conn: schema.migrate(conn, tables))
            self._prepared = True
            return done

    def table(self, object_name: str) -> sa.Table:
        """The current-state table of a declared object."""
        try:
            return self._tables.objects[object_name]
        except KeyError:
            declared = ", ".join(sorted(self._tables.objects)) or "none"
            raise ConfigError(
                f"connection {self.name!r} has no reporting table for object {object_name!r} "
                f"(declared: {declared})"
            ) from None

    @property
    def events_table(self) -> sa.Table:
        return self._tables.events

    @property
    def snapshot_table(self) -> sa.Table:
        return self._tables.snapshot

    def _ready(self) -> schema.Tables:
        if not self._prepared:
            self.prepare()
        return self._tables

    # -- health ----------------------------------------------------------------------------------
    def check(self) -> None:
        """Connect and read the server's version; a refused login or unknown database is Fatal."""
        query = "SELECT sqlite_version()" if self.settings.backend == "sqlite" else "SELECT version()"
        self.server_version = str(self._run(lambda conn: conn.exec_driver_sql(query).scalar(), write=False))

    def close(self) -> None:
        self.engine.dispose()

    # -- writes ----------------------------------------------------------------------------------
    def max_batch_size(self, object_name: str) -> int:
        return MAX_BATCH

    def write_batch(self, object_name: str, writes: Sequence[Write]) -> list[WriteResult]:
        """Upsert or soft-delete ``writes`` with their events, in one transaction (see the module)."""
        tables = self._ready()
        table = self.table(object_name)
        spec = tables.specs[object_name]
        results: list[WriteResult | None] = [None] * len(writes)
        check_length = self.settings.backend == "sqlite"  # the servers enforce lengths themselves
        refuse_nul = self.settings.backend == "postgresql"
        ops: list[PendingWrite] = []
        for index, w in enumerate(writes):
            try:
                ops.append(
                    pending_write(
                        spec, index, w, now=self._now(), check_length=check_length, refuse_nul=refuse_nul
                    )
                )
            except CrmsyncError as exc:
                results[index] = WriteResult(w.key, False, error=exc)
        if ops:
            done: list[tuple[int, WriteResult]] = []
            try:
                done = self._run(
                    lambda conn: apply(conn, table, tables.events, spec, ops, now=self._now()),
                    object_name=object_name,
                )
            except FixTheData as exc:
                if len(ops) == 1:
                    op = ops[0]
                    done = [(op.index, WriteResult(op.key, False, target_id=op.source_id, error=exc))]
                else:
                    done = [r for op in ops for r in self._apply_alone(table, spec, op)]
            for index, result in done:
                results[index] = result
        return [r or WriteResult(w.key, False) for r, w in zip(results, writes, strict=True)]

    def _apply_alone(
        self, table: sa.Table, spec: schema.ObjectSpec, op: PendingWrite
    ) -> list[tuple[int, WriteResult]]:
        """One write in its own transaction: after the database refused a batch for one record."""
        try:
            return self._run(
                lambda conn: apply(conn, table, self._tables.events, spec, [op], now=self._now()),
                object_name=spec.name,
                record=op.source_id,
            )
        except CrmsyncError as exc:
            return [(op.index, WriteResult(op.key, False, target_id=op.source_id, error=exc))]

    def append_events(self, events: Sequence[Event]) -> int:
        """Record ``events`` (those whose delivery id is already recorded are skipped); how many were new."""
        self._ready()
        now = self._now()
        rows: list[dict[str, Any]] = []
        for e in events:
            try:
                at = utc_naive(e.at) if e.at is not None else now
            except ValueError as exc:
                raise FixTheData(
                    f"event time: {exc}", object_name=e.object_name, record=e.source_id
                ) from None
            rows.append(
                {
                    "at": at,
                    "who": e.who,
                    "action": e.action,
                    "object_name": e.object_name,
                    "source_id": e.source_id,
                    "old_values": {k: jsonable(v) for k, v in (e.old_values or {}).items()},
                    "new_values": {k: jsonable(v) for k, v in (e.new_values or {}).items()},
                    "delivery_id": e.delivery_id,
                    "recorded_at": now,
                }
            )

        def work(conn: Connection) -> int:
            seen = recorded(conn, self._tables.events, [r["delivery_id"] for r in rows])
            new = []
            for row in rows:
                if row["delivery_id"] not in seen:
                    new.append(row)
                    if row["delivery_id"]:
                        seen.add(row["delivery_id"])
            if new:
                conn.execute(sa.insert(self._tables.events), new)
            return len(new)

        try:
            return self._run(work)
        except FixTheData:  # recorded meanwhile by another process: look again, once
            return self._run(work)

    def write_snapshot(self, day: dt.date, rows: Sequence[SnapshotRow], *, board: str = "") -> int:
        """Replace ``board``'s workload snapshot of ``day`` by ``rows`` (equal keys are summed)."""
        tables = self._ready()
        snapshot = tables.snapshot
        merged: dict[tuple[str, str | None, str | None], int] = {}
        for r in rows:
            key = (r.list_name, r.member, r.status)
            merged[key] = merged.get(key, 0) + int(r.count)
        taken_at = self._now()
        values = [
            {
                "snapshot_date": day,
                "board": board,
                "list_name": list_name,
                "member": member,
                "status": status,
                "card_count": count,
                "taken_at": taken_at,
            }
            for (list_name, member, status), count in sorted(merged.items(), key=_sort_key)
        ]

        def work(conn: Connection) -> int:
            conn.execute(
                sa.delete(snapshot).where(snapshot.c.snapshot_date == day, snapshot.c.board == board)
            )
            if values:
                conn.execute(sa.insert(snapshot), values)
            return len(values)

        return self._run(work)

    # -- reads -----------------------------------------------------------------------------------
    def read_records(self, object_name: str, ids: Sequence[str]) -> Iterator[Record]:
        """The rows with these source ids (unknown ids are skipped; deleted rows say so)."""
        self._ready()
        table = self.table(object_name)
        unique = sorted(set(ids))
        for start in range(0, len(unique), PAGE_SIZE):
            chunk = unique[start : start + PAGE_SIZE]
            query = sa.select(table).where(table.c.source_id.in_(chunk)).order_by(table.c.source_id)
            yield from self._records(object_name, query)

    def scan(self, object_name: str, *, since: str | None = None) -> Iterator[Record]:
        """Every row of the object (``since``: changed at or after that ISO time), by source id."""
        self._ready()
        table = self.table(object_name)
        after: str | None = None
        while True:
            query = sa.select(table).order_by(table.c.source_id).limit(PAGE_SIZE)
            if since:
                query = query.where(table.c.updated_at >= utc_naive(since))
            if after is not None:
                query = query.where(table.c.source_id > after)
            page = list(self._records(object_name, query))
            yield from page
            if len(page) < PAGE_SIZE:
                return
            after = page[-1].id

    def _records(self, object_name: str, query: sa.Select[Any]) -> list[Record]:
        spec = self._tables.specs[object_name]
        rows = self._run(lambda conn: list(conn.execute(query).mappings()), write=False)
        return [
            Record(
                object_name=object_name,
                id=row["source_id"],
                fields={c.name: row[c.name] for c in spec.columns},
                modified=jsonable(row["updated_at"]),
                deleted=row["deleted_at"] is not None,
            )
            for row in rows
        ]

    # -- plumbing --------------------------------------------------------------------------------
    def _now(self) -> dt.datetime:
        return utc_naive(self._clock())

    def _run(
        self,
        work: Callable[[Connection], T],
        *,
        write: bool = True,
        object_name: str | None = None,
        record: str | None = None,
    ) -> T:
        """``work`` in one transaction; database errors come out sorted (:mod:`.errors`)."""
        try:
            with self.engine.connect() as conn:
                if not write:
                    conn = conn.execution_options(sqlite_begin="DEFERRED")
                with conn.begin():
                    return work(conn)
        except (SQLAlchemyError, OverflowError) as exc:  # sqlite3 raises OverflowError unwrapped
            raise classify(exc, url=self.settings.shown_url, object_name=object_name, record=record) from exc


def _sort_key(item: tuple[tuple[str, str | None, str | None], int]) -> tuple[str, str, str]:
    (list_name, member, status), _ = item
    return (list_name, member or "", status or "")
