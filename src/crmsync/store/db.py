"""The connection to the store database: SQLite (default), PostgreSQL or MySQL/MariaDB.

One concurrency model: plain blocking SQLAlchemy, used from worker threads and from the web
app's thread pool. Creating a :class:`Store` opens nothing; the first query does.

SQLite is tuned for many threads and several processes sharing one file:

- ``journal_mode=WAL``: readers never block the writer and the writer never blocks readers;
- ``synchronous=NORMAL``: in WAL mode a committed transaction survives the *process* being
  killed at any moment (the WAL is in the OS page cache); only a power loss or OS crash can lose
  the last few commits, never corrupt the file. Use PostgreSQL where that matters;
- every write transaction starts with ``BEGIN IMMEDIATE`` (SQLAlchemy takes over the transaction
  begin from pysqlite), so two writers queue up on the lock at the *start* of a transaction,
  with a generous ``busy_timeout``, instead of failing with "database is locked" when a read
  transaction tries to become a write transaction. Read-only work uses :meth:`Store.read`
  (``BEGIN DEFERRED``) and runs beside the writer.

PostgreSQL and MySQL/MariaDB run at READ COMMITTED, and the queue claims work with
``SELECT ... FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import errno
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from crmsync.redact import redact_url

log = logging.getLogger(__name__)

T = TypeVar("T")
Dialect = Literal["sqlite", "postgresql", "mysql"]

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 60.0
#: connections a process keeps open (more are opened for a burst and closed after): enough for the
#: web app's ingest checks, its committer, the workers and pollers, so a busy process does not open
#: and close a connection per request
POOL_SIZE = 10
_RETRYABLE_SQLSTATES = {"40P01", "40001", "55P03"}  # deadlock, serialization failure, lock not available
_RETRYABLE_MYSQL_CODES = {1213, 1205}  # deadlock, lock wait timeout


class Store:
    """The store database. ``url`` is a SQLAlchemy URL, e.g. ``sqlite:///crmsync.db``,
    ``postgresql+psycopg://user@host/db`` or ``mysql+pymysql://user@host/db``."""

    def __init__(self, url: str = "sqlite:///crmsync.db", *, echo: bool = False) -> None:
        parsed = make_url(url)
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            self.dialect: Dialect = "sqlite"
        elif backend == "postgresql":
            self.dialect = "postgresql"
        elif backend in ("mysql", "mariadb"):
            self.dialect = "mysql"
        else:
            raise ValueError(f"unsupported store database {backend!r}: use sqlite, postgresql or mysql")
        self.url = url
        self.engine: Engine = self._create_engine(parsed, echo)
        self._write_gate = _sqlite_gate(parsed) if self.dialect == "sqlite" else nullcontext()
        event.listen(self.engine, "handle_error", self._name_store)
        self._writable_until = 0.0
        self._writable_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Store({self.shown_url!r})"

    @property
    def shown_url(self) -> str:
        """The URL fit to print: its password hidden."""
        return redact_url(self.url, database=True)

    def _name_store(self, context: Any) -> None:
        """Let every error of this store's engine say which store it is (see :func:`store_trouble`)."""
        for exc in (context.sqlalchemy_exception, context.original_exception):
            if exc is not None:
                setattr(exc, STORE_ATTRIBUTE, self.shown_url)

    def _create_engine(self, url: sa.URL, echo: bool) -> Engine:
        if self.dialect == "sqlite":
            return _sqlite_engine(url, echo)
        kwargs: dict[str, Any] = {
            "echo": echo,
            "pool_size": POOL_SIZE,
            "pool_pre_ping": True,
            "isolation_level": "READ COMMITTED",
            "connect_args": {"connect_timeout": 10},
        }
        if self.dialect == "mysql":
            kwargs["pool_recycle"] = 3600
            if "charset" not in url.query:
                url = url.update_query_dict({"charset": "utf8mb4"})
        return sa.create_engine(url, **kwargs)

    # -- transactions ---------------------------------------------------------------------------

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A connection in a write transaction, committed when the block ends without error. On
        SQLite the threads of this process take turns at a gate first (see :func:`_sqlite_gate`)."""
        with self._write_gate, self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection in a read-only transaction (on SQLite it does not take the write lock)."""
        with self.engine.connect() as conn:
            conn.execution_options(sqlite_begin="DEFERRED")
            with conn.begin():
                yield conn

    def run(self, work: Callable[[Connection], T], *, attempts: int = 5) -> T:
        """Run ``work`` in a write transaction; retried from the start after a deadlock or a
        serialization failure (the database rolled it back; the work is safe to redo)."""
        for attempt in range(1, attempts + 1):
            try:
                with self.begin() as conn:
                    return work(conn)
            except DBAPIError as exc:
                if attempt == attempts or not self.is_retryable(exc):
                    raise
                log.debug("transaction retried after %s (attempt %d)", exc.orig, attempt)
                time.sleep(0.01 * attempt)
        raise AssertionError("unreachable")

    def is_retryable(self, exc: DBAPIError) -> bool:
        """A deadlock, serialization failure or lock timeout: the same work may simply be redone.

        MariaDB rolls the whole transaction back on a deadlock, savepoints included, so a deadlock
        met inside ``begin_nested()`` surfaces as "SAVEPOINT ... does not exist" from the rollback
        to the savepoint; the deadlock it hides is found in the exception's context."""
        seen: set[int] = set()
        error: BaseException | None = exc
        while error is not None and id(error) not in seen:
            seen.add(id(error))
            if isinstance(error, DBAPIError) and self._retryable_cause(error.orig):
                return True
            error = error.__cause__ or error.__context__
        return False

    def _retryable_cause(self, orig: BaseException | None) -> bool:
        if getattr(orig, "sqlstate", None) in _RETRYABLE_SQLSTATES:
            return True
        if self.dialect == "mysql":
            args: tuple[Any, ...] = getattr(orig, "args", ())
            return bool(args) and args[0] in _RETRYABLE_MYSQL_CODES
        if self.dialect == "sqlite":
            return "database is locked" in str(orig)
        return False

    # -- schema ---------------------------------------------------------------------------------

    def _alembic_config(self) -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        return cfg

    def upgrade(self, revision: str = "head") -> None:
        """Create or migrate the tables to ``revision`` (the newest by default)."""
        from alembic import command
        from alembic.runtime.migration import MigrationContext

        cfg = self._alembic_config()
        with self.begin() as conn:
            before = MigrationContext.configure(conn).get_current_heads()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            after = MigrationContext.configure(conn).get_current_heads()
        if before != after:  # one line; alembic's own steps are logged at debug detail
            log.info(
                "store %s upgraded from %s to revision %s",
                self.shown_url,
                ", ".join(before) or "empty",
                ", ".join(after),
            )

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.read() as conn:
            heads = MigrationContext.configure(conn).get_current_heads()
        return heads[0] if heads else None

    def head_revision(self) -> str:
        """The newest migration this version of crmsync knows."""
        from alembic.script import ScriptDirectory

        heads = ScriptDirectory.from_config(self._alembic_config()).get_heads()
        return str(heads[0])

    def is_current(self) -> bool:
        """True if the database is at the newest migration."""
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        script = ScriptDirectory.from_config(self._alembic_config())
        with self.read() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
        return current == set(script.get_heads())

    # -- health ---------------------------------------------------------------------------------

    def ping(self) -> bool:
        """True if the database answers."""
        try:
            with self.read() as conn:
                conn.execute(sa.text("SELECT 1"))
        except SQLAlchemyError as exc:
            log.warning("%s", store_trouble(exc))
            return False
        return True

    def check_writable(self, *, cache_seconds: float = 5.0) -> None:
        """Raise unless the store accepts a write (a row written in a transaction rolled back at
        once: nothing stays, but a read-only file or a full disk refuses it). A success is trusted
        for ``cache_seconds``, so that frequent readiness probes cost one write every few seconds."""
        if time.monotonic() < self._writable_until:
            return
        with self._writable_lock:
            if time.monotonic() < self._writable_until:
                return
            from crmsync.store.schema import leases

            probe = f"write-probe:{secrets.token_hex(8)}"
            with self._write_gate, self.engine.connect() as conn:
                transaction = conn.begin()
                try:
                    conn.execute(sa.insert(leases).values(name=probe, owner="readiness", until=_EPOCH))
                finally:
                    transaction.rollback()
            self._writable_until = time.monotonic() + cache_seconds

    def dispose(self) -> None:
        """Close every pooled connection (e.g. at shutdown or after a fork)."""
        self.engine.dispose()


#: the attribute, on an error raised by a store, that holds the store's URL (password hidden)
STORE_ATTRIBUTE = "crmsync_store"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

TroubleKind = Literal[
    "unreachable", "login refused", "no database", "not created", "read-only", "disk full", "failed"
]

_HINTS: dict[str, str] = {
    "unreachable": "is the database server running, and are the host and port of store.url right?",
    "login refused": "check the user and password in store.url",
    "no database": "create the database named in store.url, then run: crmsync db upgrade",
    "not created": "run: crmsync db upgrade",
    "read-only": "the store must be writable: check the file's and its folder's permissions, "
    "or the database's read-only setting",
    "disk full": "free disk space where the store lives",
    "failed": "see the database server's log",
}
_SQLSTATES: dict[str, TroubleKind] = {
    "53100": "disk full",
    "25006": "read-only",
    "28P01": "login refused",
    "28000": "login refused",
    "3D000": "no database",
    "42P01": "not created",
}
_MYSQL_CODES: dict[int, TroubleKind] = {
    2002: "unreachable",
    2003: "unreachable",
    2005: "unreachable",
    2006: "unreachable",
    2013: "unreachable",
    1045: "login refused",
    1049: "no database",
    1146: "not created",
    1021: "disk full",
    1114: "disk full",
    1290: "read-only",
    1836: "read-only",
    1792: "read-only",
}
#: fragments of messages without a code (SQLite's, and drivers' at connect time)
_TEXTS: tuple[tuple[str, TroubleKind], ...] = (
    ("password authentication failed", "login refused"),
    ("no password supplied", "login refused"),
    ("does not exist", "no database"),
    ("readonly database", "read-only"),
    ("read-only file system", "read-only"),
    ("database or disk is full", "disk full"),
    ("no such table", "not created"),
    ("unable to open database file", "unreachable"),
)


@dataclass(frozen=True)
class StoreTrouble:
    """What is wrong with the store, as one line a person can act on."""

    kind: TroubleKind
    store: str
    detail: str

    @property
    def hint(self) -> str:
        return _HINTS[self.kind]

    def __str__(self) -> str:
        what = {
            "unreachable": "cannot be reached",
            "login refused": "refused the login",
            "no database": "has no such database",
            "not created": "has no crmsync tables",
            "read-only": "is read-only",
            "disk full": "is out of disk space",
            "failed": "failed",
        }[self.kind]
        return f"the store {self.store} {what} ({self.detail}): {self.hint}"


def store_trouble(exc: BaseException, store: str | None = None) -> StoreTrouble:
    """Classify an error raised by the store: unreachable, read-only, disk full, ... ``store`` is
    the store's URL to show (default: the one the error carries, password hidden)."""
    shown = store or getattr(exc, STORE_ATTRIBUTE, None) or "(store.url)"
    orig = getattr(exc, "orig", None) or exc
    detail = " ".join(str(orig).split()) or type(orig).__name__
    detail = detail if len(detail) <= 160 else detail[:157] + "..."
    return StoreTrouble(_trouble_kind(exc, orig), shown, detail)


def _trouble_kind(exc: BaseException, orig: BaseException) -> TroubleKind:
    os_error = next((e for e in (orig, exc) if isinstance(e, OSError)), None)
    if os_error is not None and os_error.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk full"
    if os_error is not None and os_error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "read-only"
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in _SQLSTATES:
        return _SQLSTATES[sqlstate]
    if isinstance(sqlstate, str) and sqlstate.startswith("08"):
        return "unreachable"
    args: tuple[Any, ...] = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in _MYSQL_CODES:
        return _MYSQL_CODES[args[0]]
    text = str(orig).lower()
    for fragment, kind in _TEXTS:
        if fragment in text:
            return kind
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return "unreachable"
    if "connection" in text and ("refused" in text or "failed" in text or "timeout" in text):
        return "unreachable"
    return "failed"


_GATES: dict[str, threading.RLock] = {}
_GATES_LOCK = threading.Lock()


def _sqlite_gate(url: sa.URL) -> AbstractContextManager[Any]:
    """The gate this process's write transactions on one SQLite file pass, one at a time.

    SQLite lets one writer in at a time; the others wait in its busy handler, which polls with
    growing sleeps (up to 100 ms each): a writer that has waited a while sleeps through the moments
    the lock is free while newcomers take it, so under steady writes from several threads (web
    requests, workers, pollers) a few transactions wait seconds while most wait milliseconds. A
    lock in the process wakes the next writer as soon as the lock is free; SQLite's busy handler
    is then only between processes. Re-entrant: a thread opening a second write transaction
    meets SQLite's own lock, as before."""
    database = url.database or ""
    if database in ("", ":memory:"):
        key = f"memory:{id(url)}"  # each in-memory store is its own database
    else:
        path = database.removeprefix("file:") if url.query.get("uri") else database
        key = str(Path(path).expanduser().resolve())
    with _GATES_LOCK:
        return _GATES.setdefault(key, threading.RLock())


def _sqlite_engine(url: sa.URL, echo: bool) -> Engine:
    memory = url.database in (None, "", ":memory:")
    kwargs: dict[str, Any] = {
        "echo": echo,
        "connect_args": {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
    }
    if memory:
        # One shared connection, so that every thread sees the same in-memory database. For
        # tests and experiments only: threads must take turns (no two transactions at once).
        kwargs["poolclass"] = StaticPool
    else:
        # a URI (sqlite:///file:PATH?mode=ro&uri=true) names its file after "file:"
        path = (url.database or "").removeprefix("file:") if url.query.get("uri") else url.database
        Path(path or "").expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        kwargs["pool_size"] = POOL_SIZE
    engine = sa.create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        # Take the transaction begin away from pysqlite; the "begin" hook below issues it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            if not memory:
                cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


StoreOrConnection = Store | Connection


@contextmanager
def connection(db: StoreOrConnection, *, write: bool = True) -> Iterator[Connection]:
    """``db`` itself if it is a Connection (the caller's transaction), else a new transaction."""
    if isinstance(db, Connection):
        yield db
        return
    with db.begin() if write else db.read() as conn:
        yield conn


def upsert(conn: Connection, table: sa.Table, key: dict[str, Any], values: dict[str, Any]) -> None:
    """Update the row with primary/unique ``key``, or insert it: portable, and safe against a
    concurrent insert of the same key (the insert runs in a savepoint; on a clash, update)."""
    where = [table.c[name] == value for name, value in key.items()]
    if conn.execute(sa.update(table).where(*where).values(**values)).rowcount:
        return
    try:
        with conn.begin_nested():
            conn.execute(sa.insert(table).values(**key, **values))
    except IntegrityError:
        # Inserted meanwhile by someone else: update it. Any other clash is the caller's.
        if not conn.execute(sa.update(table).where(*where).values(**values)).rowcount:
            raise


def upsert_many(
    conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]], keys: Sequence[str]
) -> None:
    """Insert ``rows`` or update those whose ``keys`` exist, in one statement (a worker's batch).

    Uses the database's own ``ON CONFLICT`` / ``ON DUPLICATE KEY`` form; ``keys`` must be the
    table's primary key or a unique constraint. For one row, :func:`upsert` is portable.
    """
    if not rows:
        return
    update_cols = [c for c in rows[0] if c not in keys]
    dialect = conn.dialect.name
    if dialect in ("postgresql", "sqlite"):
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        stmt = insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=list(keys), set_={c: stmt.excluded[c] for c in update_cols}
        )
        conn.execute(stmt, list(rows))
    elif dialect in ("mysql", "mariadb"):
        mstmt = mysql_insert(table)
        mstmt = mstmt.on_duplicate_key_update({c: mstmt.inserted[c] for c in update_cols})
        conn.execute(mstmt, list(rows))
    else:
        raise RuntimeError(f"unsupported database {dialect}")
