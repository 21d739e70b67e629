"""The live crmsync processes, from their heartbeats in the store (``crmsync status``).

Every process (``run``, ``serve``, ``worker``, ``scheduler``) writes its row of ``processes`` when
it starts and again every :data:`BEAT_SECONDS`, and deletes it when it stops. A process killed
outright stops beating: :func:`live` drops rows not renewed within :data:`DEAD_AFTER`.

A process's id is ``host:pid``; every lease it takes (changes claimed by its workers, the
poller, reconcile and scheduler leases) names an owner that starts with ``host:pid:``, so what a
process holds is read from the leases themselves — never from what it said it holds.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from crmsync.store.db import StoreOrConnection, connection, upsert
from crmsync.store.schema import changes, leases, processes, utcnow

#: seconds between two heartbeats of a process
BEAT_SECONDS = 5.0
#: a process whose last heartbeat is older than this is taken as gone
DEAD_AFTER = 30.0


@dataclass(frozen=True)
class ProcessInfo:
    """One live process and what it holds now."""

    id: str
    host: str
    pid: int
    role: str
    started_at: datetime
    beat_at: datetime
    details: dict[str, Any]
    #: change rows leased by its workers
    leased_changes: int
    #: names of the store leases it holds (``poller:CONNECTION``, ``reconcile:CONNECTION``, ``job:NAME``)
    leases: tuple[str, ...]


def this_process() -> str:
    """The id of the calling process: ``host:pid`` (the prefix of every lease owner it uses)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def beat(
    db: StoreOrConnection,
    id: str,
    role: str,
    started_at: datetime,
    details: dict[str, Any] | None = None,
    *,
    now: datetime | None = None,
) -> None:
    """Write (or renew) the heartbeat of process ``id``."""
    host, _, pid = id.rpartition(":")
    with connection(db) as conn:
        upsert(
            conn,
            processes,
            {"id": id},
            {
                "host": host,
                "pid": int(pid) if pid.isdigit() else 0,
                "role": role,
                "started_at": started_at,
                "beat_at": now or utcnow(),
                "details": details or {},
            },
        )


def gone(db: StoreOrConnection, id: str) -> None:
    """Remove the row of a process that stops."""
    with connection(db) as conn:
        conn.execute(sa.delete(processes).where(processes.c.id == id))


def live(
    db: StoreOrConnection, *, now: datetime | None = None, dead_after: float = DEAD_AFTER
) -> list[ProcessInfo]:
    """The processes that beat within ``dead_after`` seconds, with what each holds (oldest first);
    rows of processes that stopped beating are deleted."""
    now = now or utcnow()
    p, ch, le = processes.c, changes.c, leases.c
    with connection(db) as conn:
        conn.execute(sa.delete(processes).where(p.beat_at < now - timedelta(seconds=dead_after)))
        rows = conn.execute(sa.select(processes).order_by(p.started_at, p.id)).all()
        found = []
        for row in rows:
            prefix = f"{row.id}:"
            leased = conn.execute(
                sa.select(sa.func.count())
                .select_from(changes)
                .where(ch.state == "leased", ch.lease_owner.startswith(prefix, autoescape=True))
            ).scalar_one()
            held = conn.execute(
                sa.select(le.name)
                .where(le.owner.startswith(prefix, autoescape=True), le.until > now)
                .order_by(le.name)
            ).scalars()
            found.append(
                ProcessInfo(
                    id=row.id,
                    host=row.host,
                    pid=row.pid,
                    role=row.role,
                    started_at=row.started_at,
                    beat_at=row.beat_at,
                    details=dict(row.details or {}),
                    leased_changes=int(leased),
                    leases=tuple(held),
                )
            )
    return found
