"""The ``job_runs`` table: one row per run of a job, scheduled or started by hand.

::

    running ──► succeeded
        └─────► failed        (the message says why)

A run whose process died stays ``running``; its ``started_at`` tells how old it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Row

from crmsync.store.db import StoreOrConnection, connection
from crmsync.store.schema import job_runs

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
    return JobRun(row.id, row.job, row.started_at, row.finished_at, row.status, row.message)
