"""The change queue's tests share a queue on a clock they move by hand (lease 30 s, no jitter), on
each of SQLite, PostgreSQL and MariaDB (the ``store`` fixture)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crmsync.engine.backoff import Backoff
from crmsync.engine.queue import ChangeQueue
from crmsync.store import Store


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(store: Store, clock: Clock) -> ChangeQueue:
    return ChangeQueue(store, lease_seconds=30, backoff=Backoff(jitter=0), clock=clock)
