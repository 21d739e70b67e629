from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from crmsync.engine.queue import ChangeQueue, NewChange
from crmsync.store import Store, watermarks


def test_importing_the_store_connects_to_nothing() -> None:
    code = (
        "import sys, socket, sqlite3\n"
        "def refuse(*a, **k): raise AssertionError('connected at import')\n"
        "socket.socket.connect = refuse; sqlite3.connect = refuse\n"
        "import crmsync.store, crmsync.store.tokens, crmsync.engine.queue\n"
        "crmsync.store.Store('postgresql+psycopg://u:p@db.invalid/x')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("url", "dialect"),
    [
        ("sqlite:///x.db", "sqlite"),
        ("postgresql+psycopg://u@h/d", "postgresql"),
        ("mysql+pymysql://u@h/d", "mysql"),
    ],
)
def test_dialect_is_named(url: str, dialect: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert Store(url).dialect == dialect


def test_unsupported_databases_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        Store("oracle://u@h/d")


def test_repr_hides_the_password() -> None:
    assert "secret" not in repr(Store("postgresql+psycopg://u:secret@h/d"))


def test_sqlite_file_uses_wal_and_normal_sync(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/sub/dir/c.db")
    with store.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 60000
    store.dispose()


def test_in_memory_sqlite_is_shared_by_threads() -> None:
    store = Store("sqlite://")
    store.upgrade()
    assert store.is_current()
    thread = threading.Thread(target=lambda: watermarks.put(store, "c", "o", "v"))
    thread.start()
    thread.join()
    assert watermarks.get(store, "c", "o") == "v"


def test_ping_is_false_when_the_database_is_unreachable(tmp_path: Path) -> None:
    assert Store(f"sqlite:///{tmp_path}/ok.db").ping()
    assert not Store("postgresql+psycopg://nobody@127.0.0.1:1/none").ping()


def test_concurrent_sqlite_writers_never_see_database_is_locked(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/busy.db")
    store.upgrade()
    queue = ChangeQueue(store)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(40):
                # read-then-write transactions, the kind that fail with deferred transactions
                with store.begin() as conn:
                    conn.execute(sa.text("SELECT count(*) FROM changes")).scalar()
                    queue.enqueue([NewChange("app", "f", f"r{n}-{i}", "upsert", {"i": i})], conn=conn)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert queue.stats().pending == 240
    store.dispose()


def test_run_retries_only_retryable_errors(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/r.db")
    calls: list[int] = []

    def locked_once(conn: sa.Connection) -> str:
        calls.append(1)
        if len(calls) == 1:
            raise sa.exc.OperationalError("BEGIN", {}, Exception("database is locked"))
        return "ok"

    assert store.run(locked_once) == "ok" and len(calls) == 2

    def broken(conn: sa.Connection) -> None:
        calls.append(1)
        raise sa.exc.OperationalError("SELECT", {}, Exception("no such table: nope"))

    calls.clear()
    with pytest.raises(sa.exc.OperationalError):
        store.run(broken)
    assert len(calls) == 1
