"""``SqlConnector``: a reporting database as a flow's target (see :mod:`crmsync.connectors.base`).

The object name is a mapped object (``card``); its rows live in ``<prefix><object>`` and every
change is also appended to ``<prefix>events`` in the same transaction (:mod:`.tables`).

- :meth:`~SqlConnector.write_batch` upserts by the source's id (``target_id``, else
  ``external_id``, else the write's key); a delete sets ``deleted_at`` (rows are never removed).
  A write changes only the columns it carries and records one event with the old and new values
  of what changed. The event's action, actor, time and delivery id come from the pseudo-fields
  :data:`ACTION`, :data:`WHO`, :data:`AT` and :data:`DELIVERY_ID` (defaults: the operation,
  nobody, now, none). Applying a write twice changes nothing: a delivery id already recorded is
  skipped, and a write that changes no value records no event (unless it carries a new delivery
  id: a comment or a no-op action still happened). One transaction per batch; when the database
  refuses it for one record's data, each record is retried in its own transaction so that only
  the bad one fails.
- :meth:`~SqlConnector.append_events` records events that change no table (a comment);
  :meth:`~SqlConnector.write_snapshot` replaces one day's workload snapshot.
- Tables are created and migrated by :meth:`~SqlConnector.prepare` (additive changes only), on
  first use at the latest.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool

from crmsync.connectors.base import Connector, Record, Write, WriteResult
from crmsync.connectors.capabilities import Readable, Writable
from crmsync.connectors.sql import tables as schema
from crmsync.connectors.sql.errors import classify
from crmsync.connectors.sql.settings import SqlConnection
from crmsync.connectors.sql.values import coerce, jsonable, utc_naive
from crmsync.errors import ConfigError, CrmsyncError, Fatal, FixTheData

T = TypeVar("T")

#: pseudo-fields of a write: the event's action type, who did it, when, and the source's delivery id
ACTION = "__action__"
WHO = "__who__"
AT = "__at__"
DELIVERY_ID = "__delivery_id__"
META_FIELDS = frozenset({ACTION, WHO, AT, DELIVERY_ID})
MAX_BATCH = 500
PAGE_SIZE = 1000
SQLITE_BUSY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Event:
    """One row of the history table, for changes that touch no current-state row (a comment)."""

    object_name: str
    source_id: str
    action: str
    at: dt.datetime | str | None = None
    who: str | None = None
    old_values: Mapping[str, Any] | None = None
    new_values: Mapping[str, Any] | None = None
    delivery_id: str | None = None


@dataclass(frozen=True)
class SnapshotRow:
    """Cards in one list, of one member (None: nobody), in one status, on the snapshot's day."""

    list_name: str
    member: str | None
    status: str | None
    count: int


@dataclass
class _Op:
    index: int
    key: str
    source_id: str
    delete: bool
    values: dict[str, Any]
    at: dt.datetime
    who: str | None
    #: None: create, update or delete, as the write turns out
    action: str | None
    delivery_id: str | None


class SqlConnector(Connector, Writable, Readable):
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
        self.engine: Engine = _create_engine(settings)
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
        ops: list[_Op] = []
        for index, w in enumerate(writes):
            try:
                ops.append(self._op(spec, index, w))
            except CrmsyncError as exc:
                results[index] = WriteResult(w.key, False, error=exc)
        if ops:
            done: list[tuple[int, WriteResult]] = []
            try:
                done = self._run(lambda conn: self._apply(conn, table, spec, ops), object_name=object_name)
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
        self, table: sa.Table, spec: schema.ObjectSpec, op: _Op
    ) -> list[tuple[int, WriteResult]]:
        """One write in its own transaction: after the database refused a batch for one record."""
        try:
            return self._run(
                lambda conn: self._apply(conn, table, spec, [op]), object_name=spec.name, record=op.source_id
            )
        except CrmsyncError as exc:
            return [(op.index, WriteResult(op.key, False, target_id=op.source_id, error=exc))]

    def _op(self, spec: schema.ObjectSpec, index: int, w: Write) -> _Op:
        source_id = str(w.target_id or w.external_id or w.key or "")
        if not source_id or len(source_id) > schema.ID_LENGTH:
            raise FixTheData(
                f"a record needs a source id of 1 to {schema.ID_LENGTH} characters", object_name=spec.name
            )
        values: dict[str, Any] = {}
        for name, value in w.fields.items():
            if name in META_FIELDS:
                continue
            column = spec.column(name)
            if column is None:
                known = ", ".join(c.name for c in spec.columns)
                raise Fatal(
                    f"field {name!r} has no column in the reporting table of {spec.name} (columns: {known}); "
                    "declare it with the flow's field map",
                    object_name=spec.name,
                    record=source_id,
                )
            try:
                values[name] = coerce(column, value, check_length=self.settings.backend == "sqlite")
            except ValueError as exc:
                raise FixTheData(f"column {name}: {exc}", object_name=spec.name, record=source_id) from None
        fields = w.fields
        try:
            at = utc_naive(fields[AT]) if fields.get(AT) else self._now()
        except ValueError as exc:
            raise FixTheData(f"{AT}: {exc}", object_name=spec.name, record=source_id) from None
        delete = w.operation == "delete"
        return _Op(
            index=index,
            key=w.key,
            source_id=source_id,
            delete=delete,
            values=values,
            at=at,
            who=str(fields[WHO]) if fields.get(WHO) is not None else None,
            action=str(fields[ACTION]) if fields.get(ACTION) else None,
            delivery_id=str(fields[DELIVERY_ID]) if fields.get(DELIVERY_ID) else None,
        )

    def _apply(
        self, conn: Connection, table: sa.Table, spec: schema.ObjectSpec, ops: Sequence[_Op]
    ) -> list[tuple[int, WriteResult]]:
        ids = sorted({op.source_id for op in ops})  # one lock order for every writer: no deadlocks
        query = sa.select(table).where(table.c.source_id.in_(ids)).order_by(table.c.source_id)
        state: dict[str, dict[str, Any]] = {
            row["source_id"]: dict(row) for row in conn.execute(query.with_for_update()).mappings()
        }
        seen = self._recorded(conn, [op.delivery_id for op in ops if op.delivery_id])
        inserted: set[str] = set()
        changed_rows: dict[str, dict[str, Any]] = {}
        events: list[dict[str, Any]] = []
        done: list[tuple[int, WriteResult]] = []
        recorded_at = self._now()
        for op in ops:
            if op.delivery_id in seen:
                done.append((op.index, WriteResult(op.key, True, target_id=op.source_id, created=False)))
                continue
            if op.delivery_id:
                seen.add(op.delivery_id)
            current = state.get(op.source_id)
            created = current is None and not op.delete
            wanted: dict[str, Any]
            if op.delete:
                wanted = (
                    {"deleted_at": op.at} if current is not None and current["deleted_at"] is None else {}
                )
            else:
                wanted = dict(op.values)
                if current is not None and current["deleted_at"] is not None:
                    wanted["deleted_at"] = None  # written again after a delete: it exists again
            before = dict(current) if current is not None else {}
            changes = {c: v for c, v in wanted.items() if created or before.get(c) != v}
            if created:
                row: dict[str, Any] = {c.name: None for c in table.columns}
                row.update(source_id=op.source_id, source_system=spec.source_system, **changes)
                row["updated_at"] = op.at
                state[op.source_id] = row
                inserted.add(op.source_id)
            elif changes and current is not None:
                current.update(changes)
                current["updated_at"] = max(current["updated_at"], op.at)
                pending = changed_rows.setdefault(op.source_id, {})
                pending.update(changes, updated_at=current["updated_at"])
            if changes or op.delivery_id:
                events.append(
                    {
                        "at": op.at,
                        "who": op.who,
                        "action": op.action or ("create" if created else "delete" if op.delete else "update"),
                        "object_name": spec.name,
                        "source_id": op.source_id,
                        "old_values": {c: jsonable(before.get(c)) for c in changes if not created},
                        "new_values": {
                            c: jsonable(v) for c, v in changes.items() if v is not None or not created
                        },
                        "delivery_id": op.delivery_id,
                        "recorded_at": recorded_at,
                    }
                )
            done.append((op.index, WriteResult(op.key, True, target_id=op.source_id, created=created)))
        if inserted:
            conn.execute(sa.insert(table), [state[i] for i in sorted(inserted)])
        for source_id, values in changed_rows.items():
            if source_id not in inserted:
                conn.execute(sa.update(table).where(table.c.source_id == source_id).values(**values))
        if events:
            conn.execute(sa.insert(self._tables.events), events)
        return done

    def _recorded(self, conn: Connection, delivery_ids: Sequence[str | None]) -> set[str]:
        wanted = sorted({d for d in delivery_ids if d})
        if not wanted:
            return set()
        events = self._tables.events
        query = sa.select(events.c.delivery_id).where(events.c.delivery_id.in_(wanted))
        return {str(d) for d in conn.execute(query).scalars()}

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
            seen = self._recorded(conn, [r["delivery_id"] for r in rows])
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


def _create_engine(settings: SqlConnection) -> Engine:
    url = settings.sqlalchemy_url()
    if settings.backend != "sqlite":
        if settings.backend == "mysql" and "charset" not in url.query:
            url = url.update_query_dict({"charset": "utf8mb4"})
        return sa.create_engine(
            url,
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
            pool_timeout=settings.pool_timeout_seconds,
            pool_recycle=int(settings.pool_recycle_seconds),
            pool_pre_ping=True,
            isolation_level="READ COMMITTED",
            connect_args={"connect_timeout": settings.connect_timeout_seconds},
        )
    memory = url.database in (None, "", ":memory:")
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S}}
    if memory:
        kwargs["poolclass"] = StaticPool  # one shared connection: every thread sees one database
    engine = sa.create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.isolation_level = None  # transactions begin in _on_begin
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            if not memory:
                cursor.execute("PRAGMA journal_mode = WAL")  # BI tools read while crmsync writes
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # writers queue at the start of their transaction instead of failing half-way
        conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('sqlite_begin', 'IMMEDIATE')}")

    return engine
