"""Flow pauses: a flow whose connection needs a person stops claiming work.

A :class:`crmsync.errors.Fatal` (refused credentials, misconfiguration) pauses every flow that
writes through the connection that raised it. A pause remembers a digest of the connection's
settings: it is lifted when those settings change (a new password, a fixed URL) or when a probe
of the connection (one cheap call) succeeds again, e.g. after an administrator re-enabled the
user in the vendor's console. Nothing is lost meanwhile: the flow's changes wait in the queue.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from crmsync.store.db import StoreOrConnection, connection, upsert
from crmsync.store.schema import flow_pauses, utcnow


@dataclass(frozen=True)
class Pause:
    flow: str
    connection: str
    reason: str
    settings_digest: str
    paused_at: datetime
    probed_at: datetime | None


def pause(db: StoreOrConnection, flow: str, connection_name: str, reason: str, settings_digest: str) -> bool:
    """Pause ``flow``; True if it was not paused before (the caller alerts once)."""
    with connection(db) as conn:
        before = conn.execute(sa.select(flow_pauses.c.flow).where(flow_pauses.c.flow == flow)).first()
        now = utcnow()
        upsert(
            conn,
            flow_pauses,
            {"flow": flow},
            {
                "connection": connection_name,
                "reason": reason[:4000],
                "settings_digest": settings_digest,
                "paused_at": now,
                "probed_at": now,
            },
        )
    return before is None


def resume(db: StoreOrConnection, flows: Collection[str]) -> int:
    """Lift the pauses of ``flows``; returns how many were paused."""
    if not flows:
        return 0
    with connection(db) as conn:
        result = conn.execute(sa.delete(flow_pauses).where(flow_pauses.c.flow.in_(list(flows))))
    return int(result.rowcount or 0)


def probed(db: StoreOrConnection, flows: Collection[str]) -> None:
    """Record that the connection of ``flows`` was probed now (and is still refused)."""
    if not flows:
        return
    with connection(db) as conn:
        conn.execute(
            sa.update(flow_pauses).where(flow_pauses.c.flow.in_(list(flows))).values(probed_at=utcnow())
        )


def list_pauses(db: StoreOrConnection) -> list[Pause]:
    """Every paused flow, oldest pause first."""
    query = sa.select(flow_pauses).order_by(flow_pauses.c.paused_at, flow_pauses.c.flow)
    with connection(db, write=False) as conn:
        rows = conn.execute(query).all()
    return [
        Pause(
            flow=r.flow,
            connection=r.connection,
            reason=r.reason,
            settings_digest=r.settings_digest,
            paused_at=r.paused_at,
            probed_at=r.probed_at,
        )
        for r in rows
    ]
