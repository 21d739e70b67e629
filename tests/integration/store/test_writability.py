"""Readiness checks that the store takes a write: a read-only or full store is named as such."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from crmsync.engine.readiness import readiness
from crmsync.store import Store
from crmsync.store.db import store_trouble

from ..conftest import server_database


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    path = tmp_path / "c.db"
    store = Store(f"sqlite:///{path}")
    store.upgrade()
    store.dispose()
    return path


def test_a_read_only_sqlite_file_reads_but_is_not_ready(sqlite_file: Path) -> None:
    store = Store(f"sqlite:///file:{sqlite_file}?mode=ro&uri=true")
    try:
        assert store.ping() and store.is_current()  # reads work: only a write shows the problem
        found = readiness(store)
        assert not found.ready and found.store is not None and found.store.kind == "read-only"
        assert "is read-only" in found.reasons[0] and "cannot be reached" not in found.reasons[0]
    finally:
        store.dispose()


def test_a_writable_store_is_ready_and_the_probe_leaves_nothing(store: Store) -> None:
    with store.read() as conn:
        before = conn.execute(sa.text("SELECT COUNT(*) FROM leases")).scalar()
    found = readiness(store, cache_seconds=0)
    assert found.ready, found.reasons
    with store.read() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM leases")).scalar() == before


def test_a_full_sqlite_store_is_reported_as_out_of_disk_space(sqlite_file: Path) -> None:
    store = Store(f"sqlite:///{sqlite_file}")

    @event.listens_for(store.engine, "connect")
    def _no_room(dbapi_connection: Any, record: Any) -> None:
        cursor = dbapi_connection.cursor()
        pages = cursor.execute("PRAGMA page_count").fetchone()[0]
        cursor.execute(f"PRAGMA max_page_count = {pages}")  # SQLite then answers SQLITE_FULL
        cursor.close()

    try:
        with pytest.raises(OperationalError) as caught, store.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO leases VALUES (:n, 'x', '2000-01-01')"),
                [{"n": "k" * 150 + str(i)} for i in range(2000)],
            )
        trouble = store_trouble(caught.value)
        assert trouble.kind == "disk full" and "out of disk space" in str(trouble)
        assert str(sqlite_file) in str(trouble)  # the error names its store
    finally:
        store.dispose()


@pytest.fixture
def read_only_postgresql() -> Iterator[str]:
    with server_database("postgresql") as url:
        setup = Store(url)
        setup.upgrade()
        with setup.engine.connect() as conn:
            name = make_url(url).database
            conn.execute(sa.text(f"ALTER DATABASE {name} SET default_transaction_read_only = on"))
            conn.commit()
        setup.dispose()
        yield url


def test_a_read_only_postgresql_database_is_reported_as_read_only(read_only_postgresql: str) -> None:
    store = Store(read_only_postgresql)
    try:
        assert store.ping()
        found = readiness(store)
        assert found.store is not None and found.store.kind == "read-only", found.reasons
    finally:
        store.dispose()
