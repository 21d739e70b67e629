"""Named leases: "exactly one process does this" (fire a scheduled job, run a poller) across
any number of processes and hosts sharing the store.

A lease is held by ``owner`` until ``until``; the holder renews it by acquiring it again before
it runs out. An expired lease can be taken by anyone.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from crmsync.store.db import StoreOrConnection, connection
from crmsync.store.schema import leases, utcnow


def try_acquire(
    db: StoreOrConnection, name: str, owner: str, seconds: float, *, now: datetime | None = None
) -> bool:
    """Take or renew the lease ``name`` for ``seconds``; False if another owner holds it."""
    now = now or utcnow()
    until = now + timedelta(seconds=seconds)
    c = leases.c
    with connection(db) as conn:
        taken = conn.execute(
            sa.update(leases)
            .where(c.name == name, sa.or_(c.owner == owner, c.until <= now))
            .values(owner=owner, until=until)
        ).rowcount
        if taken:
            return True
        try:
            with conn.begin_nested():
                conn.execute(sa.insert(leases).values(name=name, owner=owner, until=until))
        except IntegrityError:
            return False  # it exists and someone else holds it
        return True


def release(db: StoreOrConnection, name: str, owner: str) -> bool:
    """Give the lease up early (only its holder can); True if it was held by ``owner``."""
    c = leases.c
    with connection(db) as conn:
        return bool(conn.execute(sa.delete(leases).where(c.name == name, c.owner == owner)).rowcount)


def holder(db: StoreOrConnection, name: str, *, now: datetime | None = None) -> str | None:
    """Who holds the lease now, if anyone."""
    now = now or utcnow()
    c = leases.c
    with connection(db, write=False) as conn:
        row = conn.execute(sa.select(c.owner).where(c.name == name, c.until > now)).first()
    return None if row is None else str(row.owner)
