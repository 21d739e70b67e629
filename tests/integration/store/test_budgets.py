"""Shared budgets (rolling windows and leased slots) on every store, and in memory; several OS
processes sharing one PostgreSQL store never pass a limit together."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from crmsync.store import Store
from crmsync.store import schema as t
from crmsync.store.budget_view import shown
from crmsync.store.budgets import (
    BudgetBook,
    MemoryBudgets,
    Slots,
    StoreBudgets,
    Window,
    wait_for,
)

from ..conftest import server_database

T0 = 1_800_000_000.0  # a bucket boundary of the windows below (a multiple of 10 s)


@pytest.fixture(params=["memory", "store"])
def book(request: pytest.FixtureRequest, store: Store) -> Iterator[BudgetBook]:
    book = MemoryBudgets() if request.param == "memory" else StoreBudgets(store)
    yield book
    book.close()


def window(limit: int = 10, seconds: float = 100.0, buckets: int = 10, label: str = "calls") -> Window:
    return Window("crm", label, limit, seconds, buckets)


def test_a_window_grants_up_to_its_limit_then_says_when_the_oldest_bucket_leaves(book: BudgetBook) -> None:
    w = window()
    for i in range(6):
        assert book.take([w], 1, T0 + i * 0.1).granted
    for i in range(4):
        assert book.take([w], 1, T0 + 25 + i * 0.1).granted  # a later bucket
    refused = book.take([w], 1, T0 + 30)
    assert not refused.granted and refused.used == 10
    # the first bucket [T0, T0+10) counts until T0+10+100: a unit never outlives the window early
    assert refused.wait == pytest.approx(T0 + 110 - (T0 + 30))
    assert not book.take([w], 1, T0 + 109.9).granted
    taken = book.take([w], 6, T0 + 110.01)
    assert taken.granted and taken.used == 10
    assert book.used(w, T0 + 110.02) == 10


def test_no_interval_of_the_window_holds_more_than_the_limit_and_a_busy_run_uses_nearly_all(
    book: BudgetBook,
) -> None:
    w = window(limit=20, seconds=100.0, buckets=10)
    granted: list[float] = []
    now = T0 + 3.0
    while now < T0 + 600:
        taken = book.take([w], 1, now)
        if taken.granted:
            granted.append(now)
            now += 0.5
        else:
            now += taken.wait
    for start in granted:
        assert sum(1 for g in granted if start <= g < start + 100) <= 20
    # one window of the ring every 110 s: 10/11 of the limit
    assert len(granted) / (600 / 100 * 20) >= 0.9 * 10 / 11


def test_several_windows_are_taken_together_or_not_at_all(book: BudgetBook) -> None:
    small, large = window(limit=2, label="own"), window(limit=100, label="org")
    assert book.take([small, large], 1, T0).granted
    assert book.take([small, large], 1, T0).granted
    refused = book.take([small, large], 1, T0)
    assert not refused.granted
    assert book.used(large, T0) == 2  # the refused take took nothing from the larger one


def test_a_report_of_the_vendor_holds_until_a_newer_one_or_its_time_is_up(book: BudgetBook) -> None:
    w = Window("crm", "org", 10, seconds=100.0, buckets=10, report_seconds=30.0)
    book.take([w], 3, T0)
    book.report(w, 2, T0)  # within our own count: ours stands
    assert book.used(w, T0) == 3
    book.report(w, 8, T0 + 1)  # other programs used some
    assert book.take([w], 2, T0 + 2).granted  # 8 + 2 taken since
    refused = book.take([w], 1, T0 + 2)
    assert not refused.granted and refused.reported == 10
    assert refused.wait == pytest.approx(T0 + 31 - (T0 + 2))
    book.report(w, 4, T0 + 3)  # the vendor's window rolled on: the count comes down
    assert book.take([w], 1, T0 + 3).granted
    assert book.used(w, T0 + 3) == 6  # our own 5 stand; the report says 4 + 1
    book.report(w, 10, T0 + 4)  # full
    assert not book.take([w], 1, T0 + 33).granted
    assert book.take([w], 1, T0 + 34.01).granted  # the report is old: one call may ask again


def test_slots_hold_at_most_the_limit_and_expire(book: BudgetBook) -> None:
    s = Slots("crm", "requests", 2, ttl=30.0)
    a = book.acquire(s, "p:a", T0)
    b = book.acquire(s, "p:b", T0)
    assert a and b and a != b
    assert book.acquire(s, "p:c", T0 + 1) is None
    assert book.holding(s, T0 + 1) == 2
    book.release(s, a, "p:someone-else")  # only the holder gives a slot back
    assert book.acquire(s, "p:c", T0 + 1) is None
    book.release(s, a, "p:a")
    assert book.acquire(s, "p:c", T0 + 1) == a
    # the holder of b was killed: its slot comes back after the lease
    assert book.acquire(s, "p:d", T0 + 29) is None
    assert book.acquire(s, "p:d", T0 + 31) is not None


def test_status_shows_the_windows_and_the_slots_in_use_not_the_buckets(store: Store) -> None:
    book = StoreBudgets(store)
    now = time.time()
    w = Window("crm", "org calls 24 h", 100)
    book.take([w], 7, now)
    s = Slots("crm", "requests", 5, ttl=60.0)
    book.show_slots(s, now)
    assert book.acquire(s, "host:1:x", now)
    store.run(
        lambda conn: conn.execute(
            sa.insert(t.api_budget).values(
                connection="trello-token:abc",
                window="slot 0001",
                used=1,
                limit_value=100,
                updated_at=t.utcnow(),
            )
        )
    )
    with store.read() as conn:
        rows = {(r.connection, r.window): (r.used, r.limit) for r in shown(conn)}
    book.close()
    assert rows == {("crm", "org calls 24 h"): (7, 100), ("crm", "requests in flight"): (1, 5)}


def test_waits_are_computed_from_the_buckets_inside_the_window() -> None:
    w = window(limit=3, seconds=100.0, buckets=10)
    old = [(T0 - 200, 5)]  # long gone
    assert wait_for(w, old, 3, T0).granted
    assert not wait_for(w, [(T0, 3)], 4, T0).granted  # more than the whole limit: never now


# -- several OS processes on one PostgreSQL store -----------------------------------------------------

SPEND = """
import json, sys, time
from crmsync.store import Store
from crmsync.store.budgets import StoreBudgets, Window
store = Store(sys.argv[1])
book = StoreBudgets(store)
w = Window("crm", "calls", int(sys.argv[2]), seconds=3600.0, buckets=12)
granted = [now for _ in range(int(sys.argv[3])) if book.take([w], 1, now := time.time()).granted]
store.dispose()
print(json.dumps(granted))
"""

HOLD = """
import json, os, sys, time
from crmsync.store import Store
from crmsync.store.budgets import Slots, StoreBudgets
store = Store(sys.argv[1])
book = StoreBudgets(store)
s = Slots("crm", "requests", int(sys.argv[2]), ttl=30.0)
owner = f"proc:{os.getpid()}"
held = []
for _ in range(int(sys.argv[3])):
    while (slot := book.acquire(s, owner, time.time())) is None:
        time.sleep(0.002)
    start = time.time()
    time.sleep(0.01)
    end = time.time()
    book.release(s, slot, owner)
    held.append((start, end))
store.dispose()
print(json.dumps(held))
"""


def _run(script: str, args: list[str], processes: int) -> list[Any]:
    procs = [
        subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * processes
    return [json.loads(out) for out in outs]


def test_four_processes_share_one_window_exactly() -> None:
    with server_database("postgresql") as url:
        Store(url).upgrade()
        results = _run(SPEND, [url, "150", "100"], 4)
    granted = [g for r in results for g in r]
    assert len(granted) == 150  # 400 tries, 150 granted: not one more, not one less
    assert sum(1 for r in results if r) >= 2  # more than one process took part


def test_four_processes_never_hold_more_slots_than_the_limit() -> None:
    with server_database("postgresql") as url:
        Store(url).upgrade()
        results = _run(HOLD, [url, "3", "25"], 4)
    spans = sorted(tuple(s) for r in results for s in r)
    assert len(spans) == 100
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans], key=lambda e: (e[0], e[1]))
    inside = most = 0
    for _, step in events:
        inside += step
        most = max(most, inside)
    assert most <= 3
    assert most >= 2  # they did overlap: the limit was what held them back


def test_a_shown_row_is_named_after_the_connection(store: Store) -> None:
    book = StoreBudgets(store)
    book.take([Window("crm", "org calls 24 h", 5)], 1, time.time())
    with store.read() as conn:
        row = conn.execute(sa.select(t.api_budget).where(t.api_budget.c.window == "org calls 24 h")).one()
    book.close()
    assert row.connection == "crm" and row.limit_value == 5 and row.used == 1
    assert row.updated_at > t.utcnow() - dt.timedelta(minutes=1)


def test_a_take_can_take_a_slot_with_its_units(book: BudgetBook) -> None:
    w = window(limit=5)
    s = Slots("crm", "requests", 1, ttl=30.0)
    first = book.take([w], 1, T0, s, "p:a")
    assert first.granted and first.slot == s.slot(0)
    second = book.take([w], 1, T0, s, "p:b")
    assert second.granted and second.slot is None  # the units, but every slot is held
    book.release(s, s.slot(0), "p:a")
    assert book.take([w], 1, T0, s, "p:b").slot == s.slot(0)
    refused = book.take([window(limit=0)], 1, T0, s, "p:c")
    assert not refused.granted and refused.slot is None
    assert book.holding(s, T0) == 1


HOLD_AND_HANG = """
import sys, time
from crmsync.store import Store
from crmsync.store.budgets import Slots, StoreBudgets
book = StoreBudgets(Store(sys.argv[1]))
s = Slots("crm", "requests", 3, ttl=float(sys.argv[2]))
held = [book.acquire(s, "host:99:requests:x", time.time()) for _ in range(2)]
print("held", len([h for h in held if h]), flush=True)
time.sleep(600)
"""


def test_a_killed_process_gives_its_slots_back_when_their_lease_runs_out() -> None:
    ttl = 3.0
    with server_database("postgresql") as url:
        store = Store(url)
        store.upgrade()
        book = StoreBudgets(store)
        s = Slots("crm", "requests", 3, ttl=ttl)
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLD_AND_HANG, url, str(ttl)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "held 2"
        finally:
            proc.kill()
            proc.communicate(timeout=30)
        killed = time.time()
        assert book.holding(s, time.time()) == 2
        assert book.acquire(s, "me", time.time()) is not None  # the third slot
        assert book.acquire(s, "me", time.time()) is None  # the killed process's two are still leased
        time.sleep(max(0.0, killed + ttl + 0.5 - time.time()))
        assert book.holding(s, time.time()) == 0  # every lease ran out, the dead process's too
        assert all(book.acquire(s, "me", time.time()) for _ in range(3))
        book.close()
        store.dispose()
