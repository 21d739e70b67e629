"""Which scheduler fires an occurrence: a compare-and-set on one row of ``leases`` per job.

The row ``job:NAME`` holds the job's *next occurrence* in ``until``, and in ``owner`` the
scheduler that claimed the last one. While ``until`` is in the future the job is not due. Once
it has passed, the occurrence at ``until`` is due, and a scheduler claims it with::

    UPDATE leases SET owner = :me, until = :next_after_now
     WHERE name = 'job:NAME' AND until = :the_until_it_read

Exactly one scheduler's update matches (the others find ``until`` already moved on: PostgreSQL
and MariaDB re-read a row another transaction changed before updating it, SQLite runs write
transactions one at a time), so each occurrence fires once however many schedulers tick. The
claim and the ``running`` row of ``job_runs`` commit together, so a claimed occurrence is
always recorded.

- **Missed occurrences** (every scheduler down): ``until`` lies in the past; the next tick
  claims it once and moves ``until`` past *now*, so a job fires once, not once per occurrence
  missed.
- **A new job** (no row yet) fires first at its next occurrence, not for one in the past.
- **A changed schedule**: a stored ``until`` that is not an occurrence of the new schedule, or
  comes later than its next one, is moved to the new schedule's next occurrence (no run).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from crmsync.scheduler import runs
from crmsync.scheduler.cron import Schedule
from crmsync.store.db import Store, StoreOrConnection, connection
from crmsync.store.schema import leases

PREFIX = "job:"


def lease_name(job: str) -> str:
    return PREFIX + job


@dataclass(frozen=True)
class Claim:
    """An occurrence this scheduler won: fire it, then finish run ``run_id``."""

    job: str
    scheduled_for: datetime
    run_id: int


def claim_due(store: Store, job: str, schedule: Schedule, owner: str, now: datetime) -> Claim | None:
    """Claim ``job``'s due occurrence for ``owner``, if one is due at ``now`` and nobody else
    claimed it; None otherwise."""
    name = lease_name(job)
    after_now = schedule.next_after(now)
    c = leases.c
    seen = next_due(store, job)  # most ticks end here, without taking a write lock
    if seen is not None and now < seen and not _stale(seen, schedule, after_now):
        return None

    def work(conn: Connection) -> Claim | None:
        due = conn.execute(sa.select(c.until).where(c.name == name)).scalar_one_or_none()
        if due is None:
            try:
                with conn.begin_nested():
                    conn.execute(sa.insert(leases).values(name=name, owner=owner, until=after_now))
            except IntegrityError:
                pass  # another scheduler saw the job first
            return None
        if _stale(due, schedule, after_now):
            # the schedule changed: its pending occurrence is not one of the new schedule's
            conn.execute(sa.update(leases).where(c.name == name, c.until == due).values(until=after_now))
            return None
        if due > now:
            return None
        taken = conn.execute(
            sa.update(leases).where(c.name == name, c.until == due).values(owner=owner, until=after_now)
        ).rowcount
        if not taken:
            return None
        return Claim(job, due, runs.start(conn, job, now))

    return store.run(work)


def next_due(db: StoreOrConnection, job: str) -> datetime | None:
    """The stored next occurrence of ``job`` (None before any scheduler has seen it)."""
    with connection(db, write=False) as conn:
        value: datetime | None = conn.execute(
            sa.select(leases.c.until).where(leases.c.name == lease_name(job))
        ).scalar()
    return value


def next_run(db: StoreOrConnection, job: str, schedule: Schedule, now: datetime) -> datetime:
    """The occurrence of ``job`` a scheduler will fire next: due already when it is not after
    ``now`` (a missed occurrence waiting for the next tick)."""
    due = next_due(db, job)
    after_now = schedule.next_after(now)
    return after_now if due is None or _stale(due, schedule, after_now) else due


def _stale(due: datetime, schedule: Schedule, after_now: datetime) -> bool:
    return due > after_now or not schedule.is_occurrence(due)
