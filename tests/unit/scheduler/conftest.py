from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ConfigDict

from crmsync.jobs import registry
from crmsync.jobs.base import Job, JobContext, JobSettings
from crmsync.store.db import Store


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class Recorder:
    """What the test jobs saw, from any thread."""

    def __init__(self) -> None:
        self.calls: list[JobContext] = []
        self._lock = threading.Lock()

    def add(self, ctx: JobContext) -> None:
        with self._lock:
            self.calls.append(ctx)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2024, 5, 6, 10, 0, 30, tzinfo=UTC))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'crmsync.db'}")
    store.upgrade()
    yield store
    store.dispose()


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """Registers ``test-count`` (records its context) and ``test-fail`` (raises) for one test."""
    registry.names()  # the built-ins first, so that the copy below holds them
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    seen = Recorder()

    class AnyArgs(JobSettings):
        model_config = ConfigDict(extra="allow", frozen=True)

    @registry.job("test-count")
    class Count(Job):
        """Counts its runs."""

        Settings = AnyArgs

        def run(self, ctx: JobContext) -> str:
            seen.add(ctx)
            return f"run {len(seen.calls)}\nwith args {dict(ctx.args)}"

    @registry.job("test-fail")
    class Fail(Job):
        """Always fails."""

        def run(self, ctx: JobContext) -> Any:
            seen.add(ctx)
            raise RuntimeError("the target said no")

    return seen
