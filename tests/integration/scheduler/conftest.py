from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from crmsync.jobs import registry
from crmsync.jobs.base import Job, JobContext


class Counter:
    """How often the ``test-count`` job ran, and for which occurrences, from any thread."""

    def __init__(self) -> None:
        self.occurrences: list[datetime | None] = []
        self._lock = threading.Lock()

    def add(self, ctx: JobContext) -> None:
        with self._lock:
            self.occurrences.append(ctx.scheduled_for)


@pytest.fixture
def counter(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Registers the job ``test-count`` for one test."""
    registry.names()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    seen = Counter()

    @registry.job("test-count")
    class Count(Job):
        def run(self, ctx: JobContext) -> str:
            seen.add(ctx)
            return "counted"

    return seen


@pytest.fixture
def start() -> datetime:
    return datetime(2024, 5, 6, 10, 0, 30, tzinfo=UTC)
