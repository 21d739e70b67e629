"""Schedulers sharing one store (SQLite, PostgreSQL, MariaDB) fire each occurrence once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest

from crmsync.scheduler import claims, runs
from crmsync.scheduler.scheduler import JobSpec, Scheduler
from crmsync.store.db import Store

from .conftest import Counter

EVERY_MINUTE = "* * * * *"
SCHEDULERS = 4


@pytest.fixture
def stores(store: Store) -> Iterator[list[Store]]:
    """One Store per scheduler, as separate processes would have (each its own connections)."""
    others = [Store(store.url) for _ in range(SCHEDULERS - 1)]
    yield [store, *others]
    for other in others:
        other.dispose()


def clock_at(moments: list[datetime]) -> Callable[[], datetime]:
    return lambda: moments[-1]


def test_schedulers_ticking_at_once_fire_each_occurrence_exactly_once(
    stores: list[Store], counter: Counter, start: datetime
) -> None:
    moments = [start]
    jobs = {"a": JobSpec("test-count", EVERY_MINUTE), "b": JobSpec("test-count", EVERY_MINUTE)}
    schedulers = [
        Scheduler(s, jobs, owner=f"scheduler-{i}", clock=clock_at(moments)) for i, s in enumerate(stores)
    ]
    barrier = threading.Barrier(SCHEDULERS)

    def tick(scheduler: Scheduler) -> list[str]:
        barrier.wait(timeout=10)
        return scheduler.tick()

    occurrences = 8
    fired_per_tick: list[list[str]] = []
    with ThreadPoolExecutor(SCHEDULERS) as pool:
        for _ in range(occurrences + 1):  # the first round only meets the jobs
            fired = [name for names in pool.map(tick, schedulers) for name in names]
            fired_per_tick.append(sorted(fired))
            moments.append(moments[-1] + timedelta(minutes=1))

    assert fired_per_tick == [[]] + [["a", "b"]] * occurrences
    first = start.replace(minute=1, second=0)
    expected = [first + timedelta(minutes=i) for i in range(occurrences)]
    assert sorted(o for o in counter.occurrences if o is not None) == sorted(expected * 2)
    for job in ("a", "b"):
        history = runs.recent(stores[0], job, limit=100)
        assert len(history) == occurrences
        assert {r.status for r in history} == {"succeeded"}


def test_a_missed_occurrence_fires_once_on_the_next_tick(
    stores: list[Store], counter: Counter, start: datetime
) -> None:
    moments = [start]
    jobs = {"a": JobSpec("test-count", EVERY_MINUTE)}
    schedulers = [Scheduler(s, jobs, owner=f"s{i}", clock=clock_at(moments)) for i, s in enumerate(stores)]
    assert schedulers[0].tick() == []
    moments.append(start + timedelta(hours=2))  # every scheduler was down for 120 occurrences
    with ThreadPoolExecutor(SCHEDULERS) as pool:
        fired = [name for names in pool.map(lambda s: s.tick(), schedulers) for name in names]
    assert fired == ["a"]
    assert counter.occurrences == [start.replace(minute=1, second=0)]
    assert [s.tick() for s in schedulers] == [[]] * SCHEDULERS
    assert claims.next_due(stores[0], "a") == moments[-1].replace(minute=1, second=0)
    assert len(runs.recent(stores[0], "a")) == 1
