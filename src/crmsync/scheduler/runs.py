"""The ``job_runs`` table: one row per run of a job, scheduled or started by hand.

::

    running ──► succeeded
        └─────► failed        (the message says why)

A run whose process died stays ``running``; its ``started_at`` tells how old it is.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.exc import SQLAlchemyError

from crmsync.store.db import StoreOrConnection, connection
from crmsync.store.schema import job_runs, utcnow

Status = Literal["running", "succeeded", "failed"]

#: longest message kept (a failure's traceback is in the log, not here)
MAX_MESSAGE = 2000


@dataclass(frozen=True)
class JobRun:
    id: int
    job: str
    started_at: datetime
    finished_at: datetime | None
    status: Status
    message: str | None
    #: how far a run got, as it last said: done of total (None: unknown), and what it was doing
    progress_done: int | None = None
    progress_total: int | None = None
    progress_what: str | None = None


def start(db: StoreOrConnection, job: str, at: datetime) -> int:
    """Record that ``job`` started at ``at``; returns the run's id."""
    with connection(db) as conn:
        result = conn.execute(sa.insert(job_runs).values(job=job, started_at=at, status="running"))
        (run_id,) = result.inserted_primary_key or (None,)
    assert run_id is not None
    return int(run_id)


def finish(db: StoreOrConnection, run_id: int, status: Status, message: str, at: datetime) -> None:
    """Record how run ``run_id`` ended."""
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 1] + "…"
    with connection(db) as conn:
        conn.execute(
            sa.update(job_runs)
            .where(job_runs.c.id == run_id)
            .values(status=status, message=message, finished_at=at)
        )


def progress(db: StoreOrConnection, run_id: int, done: int, total: int | None, what: str) -> None:
    """Record how far run ``run_id`` got (what the dashboard shows while it runs)."""
    with connection(db) as conn:
        conn.execute(
            sa.update(job_runs)
            .where(job_runs.c.id == run_id)
            .values(progress_done=done, progress_total=total, progress_what=what[:200])
        )


class ProgressRecorder:
    """A job's ``progress(done, total, what)`` that also records it in the store, at most every
    ``interval`` seconds (and always when done reaches total), then calls ``then``."""

    def __init__(
        self,
        db: StoreOrConnection,
        run_id: int,
        then: Callable[[int, int | None, str], None] | None = None,
        interval: float = 0.5,
    ) -> None:
        self.db, self.run_id, self.then, self.interval = db, run_id, then, interval
        self._last = 0.0

    def __call__(self, done: int, total: int | None, what: str) -> None:
        now = time.monotonic()
        if now - self._last >= self.interval or (total is not None and done >= total):
            self._last = now
            with contextlib.suppress(SQLAlchemyError):  # progress is news, not state: the run goes on
                progress(self.db, self.run_id, done, total, what)
        if self.then is not None:
            self.then(done, total, what)


class CommandRun:
    """A command's run (``crmsync migrate``, ``crmsync sync``) recorded as a job run named
    ``job`` (``migrate:FLOW``), so the dashboard's Jobs page shows its progress and summary like a
    job's. Recording never stops the command: a store that fails is passed over."""

    def __init__(self, db: StoreOrConnection, job: str, clock: Callable[[], datetime] | None = None) -> None:
        self.db, self.clock = db, clock or utcnow
        self.run_id = start(db, job, self.clock())
        self._recorder = ProgressRecorder(db, self.run_id)
        self._last: tuple[int, int | None, str] | None = None

    def progress(self, done: int, total: int | None, what: str) -> None:
        """``done`` of ``total`` are done (recorded at most every half second)."""
        self._last = (done, total, what)
        self._recorder(done, total, what)

    def advance(self, count: int, total: int | None, what: str) -> None:
        """``count`` more of ``total`` are done."""
        self.progress((self._last[0] if self._last else 0) + count, total, what)

    def finish(self, status: Status, summary: str) -> None:
        """Record how the run ended, with how far it got."""
        with contextlib.suppress(SQLAlchemyError):
            if self._last is not None:
                progress(self.db, self.run_id, *self._last)
            finish(self.db, self.run_id, status, " ".join(summary.split()), self.clock())


def get(db: StoreOrConnection, run_id: int) -> JobRun | None:
    with connection(db, write=False) as conn:
        row = conn.execute(sa.select(job_runs).where(job_runs.c.id == run_id)).first()
    return None if row is None else _run(row)


def recent(db: StoreOrConnection, job: str | None = None, limit: int = 20) -> list[JobRun]:
    """The latest runs, newest first, optionally of one job."""
    c = job_runs.c
    stmt = sa.select(job_runs).order_by(c.started_at.desc(), c.id.desc()).limit(limit)
    if job is not None:
        stmt = stmt.where(c.job == job)
    with connection(db, write=False) as conn:
        return [_run(row) for row in conn.execute(stmt)]


def latest(db: StoreOrConnection, jobs: Sequence[str]) -> dict[str, JobRun]:
    """The latest run of each of ``jobs`` that has run at all."""
    if not jobs:
        return {}
    c = job_runs.c
    newest = (
        sa.select(c.job, sa.func.max(c.id).label("id"))
        .where(c.job.in_(list(jobs)))
        .group_by(c.job)
        .subquery()
    )
    stmt = sa.select(job_runs).join(newest, c.id == newest.c.id)
    with connection(db, write=False) as conn:
        return {row.job: _run(row) for row in conn.execute(stmt)}


def _run(row: Row[Any]) -> JobRun:
    return JobRun(
        row.id,
        row.job,
        row.started_at,
        row.finished_at,
        row.status,
        row.message,
        row.progress_done,
        row.progress_total,
        row.progress_what,
    )
