"""On SQLite, a process's write transactions take turns at a gate before SQLite's lock (one per
database file, whichever Store opened it); reads and other databases pass no gate."""

from __future__ import annotations

import threading
import time
from contextlib import nullcontext
from pathlib import Path

import sqlalchemy as sa

from crmsync.store import Store


def test_one_gate_per_sqlite_file(tmp_path: Path) -> None:
    a, again, other = (Store(f"sqlite:///{tmp_path / name}") for name in ("a.db", "a.db", "b.db"))
    assert a._write_gate is again._write_gate
    assert a._write_gate is not other._write_gate
    assert not isinstance(a._write_gate, nullcontext)


def test_a_writer_waits_at_the_gate_and_reads_do_not(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    with store.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (v INTEGER)")
    holding, release = threading.Event(), threading.Event()
    order: list[str] = []

    def first() -> None:
        with store.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
            holding.set()
            release.wait(10)
            order.append("first commits")

    def second() -> None:
        with store.begin() as conn:
            order.append("second begins")
            conn.exec_driver_sql("INSERT INTO t VALUES (2)")

    one = threading.Thread(target=first)
    one.start()
    assert holding.wait(10)
    two = threading.Thread(target=second)
    two.start()
    time.sleep(0.2)
    assert order == []  # the second writer waits while the first holds its transaction
    with store.read() as conn:  # a reader is not held up
        assert conn.execute(sa.text("SELECT COUNT(*) FROM t")).scalar_one() == 0
    release.set()
    one.join(10)
    two.join(10)
    assert order == ["first commits", "second begins"]
    with store.begin() as conn:  # the gate is free again
        conn.exec_driver_sql("INSERT INTO t VALUES (3)")
    with store.read() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM t")).scalar_one() == 3
