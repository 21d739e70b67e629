"""A transaction that loses a deadlock is run again, even when the deadlock met it in a savepoint
(MariaDB then rolls back the savepoint too, and the rollback to it fails)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from crmsync.store import Store

probe = sa.Table(
    "deadlock_probe",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("n", sa.Integer, nullable=False),
)


@pytest.fixture(params=["postgresql", "mysql"])
def server_store(request: pytest.FixtureRequest, _server_stores: dict[str, Store]) -> Iterator[Store]:
    store = _server_stores[request.param]
    probe.create(store.engine, checkfirst=True)
    with store.begin() as conn:
        conn.execute(sa.delete(probe))
        conn.execute(sa.insert(probe), [{"id": 1, "n": 0}, {"id": 2, "n": 0}])
    yield store
    probe.drop(store.engine)


def test_a_deadlock_inside_a_savepoint_is_retried_from_the_start(server_store: Store) -> None:
    both_hold_one = threading.Barrier(2, timeout=20)
    runs = {"a": 0, "b": 0}
    errors: list[BaseException] = []

    def bump(conn: sa.Connection, row: int) -> None:
        conn.execute(sa.update(probe).where(probe.c.id == row).values(n=probe.c.n + 1))

    def crossing(name: str, first: int, second: int) -> None:
        def work(conn: sa.Connection) -> None:
            runs[name] += 1
            with conn.begin_nested():
                bump(conn, first)
                if runs[name] == 1:
                    both_hold_one.wait()  # each holds one row and asks for the other's: a deadlock
                bump(conn, second)

        try:
            server_store.run(work)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=crossing, args=("a", 1, 2)),
        threading.Thread(target=crossing, args=("b", 2, 1)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(runs.values()) == [1, 2]  # the database chose one to lose; it ran again
    with server_store.read() as conn:
        assert {r.id: r.n for r in conn.execute(sa.select(probe.c.id, probe.c.n))} == {1: 2, 2: 2}
