"""``crmsync migrate FLOW``: a one-time, repeatable backfill of a target from a source (a Monday.com
board from Salesforce, say).

The flow is one-way, from a source whose connector exports whole objects (``Exports``: Salesforce;
``source``, object ``source_object``) → a target that can be written to (``Writable``: Monday.com;
``target``, object ``object``), with a ``match`` field on the target that holds each record's source
id. The engine asks the connectors for capabilities only; no query text is written here::

    count ──► export ─────────────► map ──► upsert by the match field ──► link + shadow + log
    (the source connector: Exports;  to_target   Writable.write_batch, as     one transaction
    Salesforce reads by a query, or  (field      many a call as its           per batch
    a Bulk API 2.0 job from 2,000)   map)        max_batch_size (monday:
                                                 what the budget allows)

- **Resumable.** After each batch the engine records, in one store transaction, a link per record
  (source key → target id), the shadows that make the records' own webhooks echoes (what
  :meth:`crmsync.engine.twoway.TwoWay.remember` records) and a sync-log line. A rerun skips every
  linked record (counted as *skipped*). A record written but not yet linked when the process was
  killed is found again by its match column (the write is an upsert), so a migration killed at
  any moment and run again ends with exactly one target record per source record.
- **Errors** (:mod:`crmsync.errors`): *retry later* (including a spent budget) → wait and send the
  batch again, a bounded number of times; *fix the data* → that record is counted as failed and
  logged (``refused``), the others go on; *fatal* → what was written is recorded, then the error is
  raised (the migration stops; a rerun resumes).
- **Dry run**: reads the source and maps every record, writes nothing; records without a link are
  counted as *created* (they would be written: created, or updated if a record already holds their
  id), linked ones as *skipped*. On a target that lists its choice fields (``ChoiceFields``: a
  board's status and dropdown columns, read once), a record with a value that is not one of its
  field's labels is *failed*, and :attr:`Migration.label_problems` says which field and value, as
  the target would refuse them.
- **Waiting** for the target's budget (a ``PacedBudget``: monday's complexity budget) or a vendor's
  retry-later is reported to :attr:`Migration.waiting` every second with the seconds left, then
  with None; :meth:`Migration.waiting_for` says what for.
- ``limit`` caps the records written (or that failed) by this run; skipped records do not count,
  so ``--limit 100`` run twice migrates 200 records.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from crmsync.connectors.base import Record, Write, WriteResult
from crmsync.connectors.capabilities import (
    ChoiceFields,
    Choices,
    Exports,
    PacedBudget,
    Writable,
    countdown,
    missing,
    offers,
    require,
)
from crmsync.connectors.stamps import try_stamp as parse_stamp
from crmsync.engine.flows import FlowRuntime
from crmsync.engine.runtime import Runtime
from crmsync.errors import ConfigError, CrmsyncError, Fatal, FixTheData, RetryLater
from crmsync.store import schema as t
from crmsync.store.db import upsert_many
from crmsync.store.shadow import get_shadows
from crmsync.store.synclog import LogEntry, record_many

log = logging.getLogger(__name__)

#: how often one batch is sent again after *retry later* before the migration stops
MAX_ATTEMPTS = 6
#: first and longest wait between two attempts of a batch, seconds (unless the vendor says)
FIRST_WAIT = 1.0
MAX_WAIT = 120.0


@dataclass
class MigrationSummary:
    """What a migration did (or, in a dry run, would do)."""

    created: int = 0
    updated: int = 0
    skipped: int = 0
    failed: int = 0
    api_calls: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    dry_run: bool = False

    @property
    def written(self) -> int:
        return self.created + self.updated

    @property
    def handled(self) -> int:
        return self.created + self.updated + self.skipped + self.failed


@dataclass(frozen=True)
class _Planned:
    key: str
    source: dict[str, Any]  # the source fields the flow maps (shadow of the source side)
    write: Write
    at: datetime


def _chunks(rows: Iterable[Record], size: int) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class Migration:
    """Backfill the target of a one-way flow (Salesforce → Monday.com, say). ``run()`` once;
    ``count()`` first if needed."""

    def __init__(
        self,
        runtime: Runtime,
        flow_name: str,
        *,
        dry_run: bool = False,
        limit: int | None = None,
        batch: int | None = None,
        progress: Callable[[int], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        flow = runtime.flows.get(flow_name)
        if flow is None:
            valid = ", ".join(sorted(runtime.flows)) or "none"
            raise ConfigError(f"unknown flow {flow_name!r}; valid: {valid}")
        self.rt = runtime
        self.flow: FlowRuntime = flow
        self.dry_run = dry_run
        self.limit = limit
        self.progress = progress
        self.sleep = sleep
        self.max_attempts = max_attempts
        self._check_flow()
        self.source_object: str = str(flow.source_object)
        self.match_field: str = str(flow.match_field)
        #: the source fields to read (:meth:`FlowRuntime.source_fields`, as a preview and a sync read)
        self.fields = flow.source_fields()
        self._batch = batch
        self._count: int | None = None
        self._started = 0.0
        self._before: dict[str, int] = {}
        self.summary = MigrationSummary(dry_run=dry_run)
        #: told the seconds left while the migration waits (budget, retry later), then None
        self.waiting: Callable[[float | None], None] | None = None
        #: dry run: (field, its title, value, its labels) → records that would be refused
        self.label_problems: Counter[tuple[str, str, str, tuple[str, ...]]] = Counter()
        self._choices: Mapping[str, Choices] = {}

    # -- set-up --------------------------------------------------------------------------------------
    def _check_flow(self) -> None:
        flow, connections = self.flow, self.rt.config.connections
        problems = []
        source, target = connections.get(flow.source), connections.get(flow.target)
        if source is None:
            problems.append(f"its source {flow.source!r} is not a connection")
        elif not offers(self.rt.connector_type(flow.source), Exports):
            problems.append(missing(source.type, flow.source, Exports, "a migration").message)
        if target is None:
            problems.append(f"its target {flow.target!r} is not a connection")
        elif not offers(self.rt.connector_type(flow.target), Writable):
            problems.append(missing(target.type, flow.target, Writable, "a migration").message)
        if not flow.source_object:
            problems.append("it names no source_object (the object to read)")
        if flow.match_field is None:
            problems.append(
                "it has no match column (match: {field: <column id>}): the target's field that holds "
                "the source's id, so that a rerun finds the records it already wrote"
            )
        if not any(r.to_target for r in flow.rules):
            problems.append("none of its fields travels to the target")
        if problems:
            message = f"flow {flow.name!r} cannot be migrated: " + "; ".join(problems)
            raise ConfigError(message, problems=[message])

    def _source(self) -> Exports:
        return require(
            self.rt.connector(self.flow.source), Exports, f"the migration of flow {self.flow.name!r}"
        )

    def _target(self) -> Writable:
        return require(
            self.rt.connector(self.flow.target), Writable, f"the migration of flow {self.flow.name!r}"
        )

    def waiting_for(self) -> str:
        """What a wait is for, in words: the target's budget (monday's complexity budget), if it
        paces itself to one."""
        if offers(self.rt.connector_type(self.flow.target), PacedBudget):
            return require(self.rt.connector(self.flow.target), PacedBudget).budget_name()
        return f"{self.flow.target} to accept writes again"

    def count(self) -> int:
        """How many records the source object holds (asked once, remembered)."""
        self._start()
        if self._count is None:
            self._count = self._source().count_records(self.source_object)
        return self._count

    def batch_size(self) -> int:
        """Records per batch: as many as the target takes in one call (monday: in one request,
        inside the complexity budget)."""
        if self._batch is not None:
            return max(1, self._batch)
        if self.dry_run:  # nothing is written: the target is not asked
            return 100
        return max(1, int(self._target().max_batch_size(self._object())))

    def _object(self) -> str:
        """The target object's id (a name is looked up once: a monday board's)."""
        return str(self.rt.board_of(self.flow, self.flow.target))

    # -- run -----------------------------------------------------------------------------------------
    def run(self) -> MigrationSummary:
        """Migrate; returns the summary (also kept in :attr:`summary`, even when an error stops it)."""
        self._start()
        try:
            self._run()
        finally:
            self.summary.seconds = time.monotonic() - self._started
            self.summary.api_calls = {name: self._calls(name) - n for name, n in self._before.items()}
        return self.summary

    def _start(self) -> None:
        """Note the time and each connection's calls, once: the summary counts from here."""
        if self._before:
            return
        self._started = time.monotonic()
        connections = [self.flow.source, self.flow.target]
        self._before = {name: self._calls(name) for name in connections}

    def _calls(self, name: str) -> int:
        return self.rt.connector(name).calls_made

    def _run(self) -> None:
        size = self.batch_size()
        target = self._object()
        if self.dry_run and offers(self.rt.connector_type(self.flow.target), ChoiceFields):
            self._choices = require(self.rt.connector(self.flow.target), ChoiceFields).choice_fields(target)
        with self._reporting_waits():
            self._migrate(target, size)

    def _refused_labels(self, fields: Mapping[str, Any]) -> list[tuple[str, str, str, tuple[str, ...]]]:
        """(field, title, value, labels) of each value of a choice field the target would refuse."""
        found = []
        for name, value in fields.items():
            choices = self._choices.get(name)
            if choices is None:
                continue
            for one in choices.refused(value):
                found.append((name, choices.title, one, choices.labels))
        return found

    @contextmanager
    def _reporting_waits(self) -> Iterator[None]:
        """While migrating, the target's waits for its budget are reported to :attr:`waiting`."""
        if self.dry_run or not offers(self.rt.connector_type(self.flow.target), PacedBudget):
            yield
            return
        paced = require(self.rt.connector(self.flow.target), PacedBudget)
        paced.on_wait(self._told)
        try:
            yield
        finally:
            paced.on_wait(None)

    def _told(self, seconds: float | None) -> None:
        if self.waiting is not None:
            self.waiting(seconds)

    def _wait(self, seconds: float, sleep: Callable[[float], None]) -> None:
        """Sleep ``seconds`` in steps of at most one, telling :attr:`waiting` what is left."""
        if self.waiting is None:
            sleep(seconds)
            return
        countdown(seconds, sleep, self._told)

    def _migrate(self, target: str, size: int) -> None:
        buffer: list[_Planned] = []
        for rows in _chunks(self._read(), size):
            linked = self._linked([str(r.fields.get(self.flow.key_field)) for r in rows])
            full = False
            for row in rows:
                if self._room() <= len(buffer):
                    full = True
                    break
                planned = self._plan(row, linked)
                if planned is not None:
                    buffer.append(planned)
            while len(buffer) >= size:  # requests stay full even when many records are skipped
                self._flush(target, buffer[:size])
                buffer = buffer[size:]
            if self.progress is not None:
                self.progress(len(rows))
            if full:
                break
        if buffer:
            self._flush(target, buffer)

    def _room(self) -> int:
        """How many more records this run may write (``limit``)."""
        if self.limit is None:
            return 1 << 62
        return max(0, self.limit - (self.summary.written + self.summary.failed))

    def _read(self) -> Iterator[Record]:
        yield from self._source().export(
            self.source_object, self.fields, order_by=self.flow.key_field, count=self.count()
        )

    def _linked(self, keys: Sequence[str]) -> set[str]:
        c = t.links.c
        with self.rt.store.read() as conn:
            rows = conn.execute(
                sa.select(c.source_key).where(
                    c.flow == self.flow.name, c.source_system == self.flow.source, c.source_key.in_(keys)
                )
            ).all()
        return {str(r.source_key) for r in rows}

    def _plan(self, record: Record, linked: set[str]) -> _Planned | None:
        flow = self.flow
        row = record.fields
        key = str(row.get(flow.key_field) or "")
        if not key or key in linked or not flow.matches_when(row):
            self.summary.skipped += 1
            return None
        source = {r.source: row.get(r.source) for r in flow.rules if r.to_target}
        at = parse_stamp(record.modified) or datetime.now(UTC)
        try:
            fields = flow.to_target(key, source, owned=False)
        except FixTheData as exc:
            self._failed(key, exc)
            return None
        fields.setdefault(self.match_field, key)
        refused = self._refused_labels(fields) if self.dry_run else []
        if refused:
            for problem in refused:
                self.label_problems[problem] += 1
            name, title, value, labels = refused[0]
            message = f"field {name} ({title}): {value!r} is not one of its labels ({', '.join(labels)})"
            self._failed(key, FixTheData(message, record=key))
            return None
        write = Write(
            key=key, operation="upsert", fields=fields, external_id_field=self.match_field, external_id=key
        )
        return _Planned(key, source, write, at)

    # -- writing a batch -------------------------------------------------------------------------------
    def _flush(self, target: str, batch: list[_Planned]) -> None:
        if self.dry_run:
            self.summary.created += len(batch)
            return
        writer = self._target()
        waiting = list(batch)
        wait = FIRST_WAIT
        for attempt in range(1, self.max_attempts + 1):
            try:
                results = writer.write_batch(target, [p.write for p in waiting])
            except RetryLater as exc:
                if attempt == self.max_attempts:
                    raise self._gave_up(exc, len(waiting)) from exc
                wait = self._pause(exc, wait)
                continue
            except FixTheData as exc:  # the whole request was refused for what one record holds
                if len(waiting) == 1:
                    self._failed(waiting[0].key, exc)
                    return
                half = len(waiting) // 2
                self._flush(target, waiting[:half])
                self._flush(target, waiting[half:])
                return
            done, again, stop = self._sort(waiting, results)
            self._record(done)
            if stop is not None:
                raise stop
            if not again:
                return
            waiting = [p for p, _ in again]
            if attempt == self.max_attempts:
                raise self._gave_up(again[0][1], len(waiting))
            wait = self._pause(again[0][1], wait)

    def _sort(
        self, waiting: list[_Planned], results: list[WriteResult]
    ) -> tuple[list[tuple[_Planned, WriteResult]], list[tuple[_Planned, RetryLater]], CrmsyncError | None]:
        done: list[tuple[_Planned, WriteResult]] = []
        again: list[tuple[_Planned, RetryLater]] = []
        stop: CrmsyncError | None = None
        for planned, result in zip(waiting, results, strict=True):
            error = result.error
            if result.ok and result.target_id:
                done.append((planned, result))
            elif isinstance(error, RetryLater):
                again.append((planned, error))
            elif isinstance(error, Fatal):
                stop = stop or error
            else:
                gave = f"{self.flow.target} gave no record id"
                self._failed(planned.key, error or FixTheData(gave, record=planned.key))
        return done, again, stop

    def _pause(self, exc: RetryLater, wait: float) -> float:
        seconds = exc.retry_after if exc.retry_after is not None else wait
        seconds = min(max(seconds, 0.0), MAX_WAIT)
        log.warning(
            "%s asks to retry later (%s); waiting %.1f s before sending the batch again",
            self.flow.target,
            exc,
            seconds,
        )
        self._wait(seconds, self.sleep)
        return min(wait * 2, MAX_WAIT)

    def _gave_up(self, exc: CrmsyncError, count: int) -> RetryLater:
        return RetryLater(
            f"{self.flow.target} still refused a batch of {count} records after {self.max_attempts} "
            f"attempts ({exc}); "
            "what was written is recorded: run the migration again to resume",
            retry_after=getattr(exc, "retry_after", None),
            url=exc.url,
            object_name=exc.object_name,
            vendor_code=exc.vendor_code,
        )

    def _record(self, done: list[tuple[_Planned, WriteResult]]) -> None:
        """Links, shadows and sync-log lines of the records just written, in one transaction."""
        if not done:
            return
        flow = self.flow
        now = datetime.now(UTC)
        link_rows = []
        entries = []
        source_shadows: dict[str, dict[str, Any]] = {}
        target_shadows: dict[str, dict[str, Any]] = {}
        for planned, result in done:
            item = str(result.target_id)
            link_rows.append(
                {
                    "flow": flow.name,
                    "source_system": flow.source,
                    "source_key": planned.key,
                    "target_system": flow.target,
                    "target_id": item,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            stamp = planned.at.isoformat()
            source_shadows[planned.key] = {k: [v, stamp] for k, v in planned.source.items()}
            target_shadows[item] = {k: [v, stamp] for k, v in planned.write.fields.items()}
            operation = "create" if result.created else "update"
            entries.append(
                LogEntry(
                    flow=flow.name,
                    record_key=planned.key,
                    outcome="applied",
                    operation=operation,
                    source=flow.source,
                    target=flow.target,
                    target_id=item,
                    message=f"migrated: {operation}d record {item}",
                )
            )
        with self.rt.store.begin() as conn:
            upsert_many(conn, t.links, link_rows, ["flow", "source_system", "source_key"])
            _put_shadows(conn, flow.source, f"{flow.name}:source", source_shadows, now)
            _put_shadows(conn, flow.target, f"{flow.name}:target", target_shadows, now)
            record_many(conn, entries)
        created = sum(1 for _, r in done if r.created)
        self.summary.created += created
        self.summary.updated += len(done) - created

    def _failed(self, key: str, error: CrmsyncError) -> None:
        self.summary.failed += 1
        if self.dry_run:  # the dry run's summary counts them; -v shows each
            log.debug("record %s would not be migrated: %s", key, error)
            return
        log.warning("record %s not migrated: %s", key, error)
        entry = LogEntry(
            flow=self.flow.name,
            record_key=key,
            outcome="refused",
            operation="upsert",
            source=self.flow.source,
            target=self.flow.target,
            message=f"migration: {error}",
        )
        try:
            record_many(self.rt.store, [entry])
        except SQLAlchemyError:  # the log is not worth stopping a migration for
            log.exception("could not log the refusal of %s", key)


def _put_shadows(
    conn: sa.Connection, system: str, object_name: str, shadows: Mapping[str, dict[str, Any]], now: datetime
) -> None:
    """Merge ``shadows`` (record id → ``{field: [value, iso time]}``) into the store, one statement.

    The same rows :meth:`crmsync.engine.twoway.TwoWay.remember` writes one record at a time (the
    two-way engine reads them to recognise echoes); a test keeps the two in step.
    """
    if not shadows:
        return
    known = get_shadows(conn, system, object_name, list(shadows))
    rows = [
        {
            "system": system,
            "object_name": object_name,
            "record_id": record_id,
            "fields": {**known.get(record_id, {}), **fields},
            "updated_at": now,
        }
        for record_id, fields in shadows.items()
    ]
    upsert_many(conn, t.shadow, rows, ["system", "object_name", "record_id"])
