"""Database fixtures: the ``store`` fixture runs a test on SQLite, PostgreSQL and MariaDB.

The servers are real requirements, not optional: a test fails (never skips) with a clear message
when one is unreachable. Each test session creates its own databases (``crmsync_t_<random>``) and
drops them at the end; each test starts with empty tables. Override the server URLs with
``CRMSYNC_TEST_POSTGRESQL_URL`` and ``CRMSYNC_TEST_MYSQL_URL`` (they name an existing database
used only to create and drop the test databases).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from crmsync.store import Store
from crmsync.store.schema import metadata

SERVERS = {
    "postgresql": os.environ.get(
        "CRMSYNC_TEST_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mysql": os.environ.get("CRMSYNC_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
KINDS = ["sqlite", "postgresql", "mysql"]


@contextmanager
def server_database(kind: str) -> Iterator[str]:
    """A fresh, empty database on the ``kind`` server; dropped afterwards. Yields its URL."""
    admin_url = make_url(SERVERS[kind])
    name = f"crmsync_t_{secrets.token_hex(4)}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as conn:
            if kind == "mysql":
                conn.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
            else:
                conn.exec_driver_sql(f"CREATE DATABASE {name}")
    except sa.exc.OperationalError as exc:
        pytest.fail(
            f"the {kind} test server at {admin_url.render_as_string(hide_password=True)} is required "
            f"and unreachable (set CRMSYNC_TEST_{kind.upper()}_URL): {exc}",
            pytrace=False,
        )
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            if kind == "postgresql":
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            else:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        admin.dispose()


class _ServerStores(dict[str, Store]):
    """One migrated Store per server kind, created on first use (so that a run of only the
    SQLite tests needs no server)."""

    def __init__(self, stack: ExitStack) -> None:
        super().__init__()
        self._stack = stack

    def __missing__(self, kind: str) -> Store:
        store = Store(self._stack.enter_context(server_database(kind)))
        self._stack.callback(store.dispose)
        store.upgrade()
        self[kind] = store
        return store


@pytest.fixture(scope="session")
def _server_stores() -> Iterator[dict[str, Store]]:
    with ExitStack() as stack:
        yield _ServerStores(stack)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "crmsync.db"
    store = Store(f"sqlite:///{path}")
    store.upgrade()
    store.dispose()  # the last connection to close checkpoints the WAL into the file
    assert not path.with_name(path.name + "-wal").exists()
    return path


def _empty_tables(store: Store) -> None:
    names = [t.name for t in reversed(metadata.sorted_tables)]
    with store.begin() as conn:
        if store.dialect == "postgresql":
            conn.exec_driver_sql(f"TRUNCATE {', '.join(names)} RESTART IDENTITY")
        else:
            for name in names:
                conn.exec_driver_sql(f"DELETE FROM {name}")


@pytest.fixture(params=KINDS)
def store(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    _sqlite_template: Path,
    _server_stores: dict[str, Store],
) -> Iterator[Store]:
    """A migrated, empty store on each of SQLite (a file), PostgreSQL and MariaDB."""
    kind: str = request.param
    if kind == "sqlite":
        path = tmp_path / "crmsync.db"
        shutil.copyfile(_sqlite_template, path)
        sqlite_store = Store(f"sqlite:///{path}")
        yield sqlite_store
        sqlite_store.dispose()
        return
    server_store = _server_stores[kind]
    _empty_tables(server_store)
    yield server_store


@pytest.fixture(params=KINDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a new, empty database of each kind."""
    kind: str = request.param
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    with server_database(kind) as url:
        yield url
