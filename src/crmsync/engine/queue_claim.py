"""Claiming changes: one record's work at a time, in order, under a lease.

A claim finds *heads*: changes that are the oldest unfinished change of their ``(flow,
record_key)`` and are available (pending and due, or leased with their lease run out), while no
other change of the record is leased to someone else. For each head it then reads the record's
later unfinished changes in id order and folds them into one :class:`ClaimedChange`, stopping at
the first that may not join:

- one leased elsewhere and still live (order must hold: nothing folds past a gap);
- one past ``max_fold`` changes;
- an event (``meta``) after the head, or any change after a head that is an event: an event is
  applied on its own.

Every row folded is then leased to the claimer: ``state`` leased, ``leased_until`` and
``available_at`` the lease's end.

While a row is leased its ``available_at`` holds the lease expiry, so one index,
``(state, available_at, id)``, finds both pending work and expired leases in claim order. Claims
lock heads with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL and MariaDB (``locking``), so concurrent
workers take different records; on SQLite the write transaction (``BEGIN IMMEDIATE``) serializes
claims.

The function runs in the caller's transaction; :meth:`crmsync.engine.queue.ChangeQueue.claim`
opens it and reads the time from its clock.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from crmsync.connectors.base import EventMeta
from crmsync.engine.queue_values import UNFINISHED, ClaimedChange, fold, in_chunks
from crmsync.store.schema import changes as t_changes


def claim_records(
    conn: Connection,
    owner: str,
    limit: int,
    flows: Collection[str] | None,
    *,
    now: datetime,
    lease_seconds: float,
    max_fold: int,
    locking: bool,
) -> list[ClaimedChange]:
    """Lease up to ``limit`` records' work to ``owner`` for ``lease_seconds`` from ``now``, oldest
    available first, each record's changes folded (at most ``max_fold``); only ``flows`` when
    given."""
    until = now + timedelta(seconds=lease_seconds)
    heads = _heads(conn, now, limit, flows, locking=locking)
    if not heads:
        return []
    c = t_changes.c
    members: dict[tuple[str, str], list[Row[Any]]] = {(h.flow, h.record_key): [] for h in heads}
    head_ids = {(h.flow, h.record_key): h.id for h in heads}
    stopped: set[tuple[str, str]] = set()
    by_flow: dict[str, list[str]] = {}
    for flow, record_key in members:
        by_flow.setdefault(flow, []).append(record_key)
    batches = [(flow, chunk) for flow, record_keys in by_flow.items() for chunk in in_chunks(record_keys)]
    for flow, chunk in batches:
        query = (
            sa.select(c.id, c.source, c.flow, c.record_key, c.operation, c.payload, c.state)
            .add_columns(c.available_at, c.leased_until, c.attempts, c.created_at, c.meta)
            .where(c.flow == flow, c.record_key.in_(chunk), c.state.in_(UNFINISHED))
            .order_by(c.id)
        )
        if locking:
            query = query.with_for_update()
        for row in conn.execute(query):
            key = (row.flow, row.record_key)
            if key in stopped or row.id < head_ids[key]:
                continue
            live_elsewhere = row.id != head_ids[key] and row.state == "leased" and row.available_at > now
            if live_elsewhere or len(members[key]) >= max_fold:
                stopped.add(key)  # fold nothing past a gap: order must hold
                continue
            if members[key] and (row.meta or members[key][0].meta):
                stopped.add(key)  # an event is applied on its own
                continue
            members[key].append(row)
    claimed: list[ClaimedChange] = []
    ids: list[int] = []
    for head in heads:
        rows = members[(head.flow, head.record_key)]
        if not rows or rows[0].id != head.id:
            continue  # the head changed under us (finished meanwhile); leave the record
        operation, fields = fold((r.operation, r.payload) for r in rows)
        change_ids = tuple(r.id for r in rows)
        ids.extend(change_ids)
        claimed.append(
            ClaimedChange(
                change_ids=change_ids,
                source=rows[0].source,
                flow=head.flow,
                record_key=head.record_key,
                operation=operation,
                fields=fields,
                attempts=rows[0].attempts,
                created_at=rows[0].created_at,
                lease_owner=owner,
                meta=EventMeta.from_dict(rows[0].meta) if len(rows) == 1 else None,
                parts=tuple((r.operation, r.payload, r.created_at) for r in rows) if len(rows) > 1 else (),
                # a leased row's lease ran out; a pending one keeps its lease's end when it
                # was given back after its write was sent (see ChangeQueue.release)
                reclaimed=any(r.leased_until is not None for r in rows),
            )
        )
    values = {
        "state": "leased",
        "lease_owner": owner,
        "leased_until": until,
        "available_at": until,
        "updated_at": now,
    }
    for chunk in in_chunks(ids):
        conn.execute(sa.update(t_changes).where(c.id.in_(chunk)).values(**values))
    return claimed


def _heads(
    conn: Connection, now: datetime, limit: int, flows: Collection[str] | None, *, locking: bool
) -> list[Row[Any]]:
    """The records' heads available at ``now``, oldest available first (at most ``limit``)."""
    c = t_changes.c
    other = t_changes.alias("other")
    o = other.c
    blocked = (
        sa.exists()
        .where(
            o.flow == c.flow,
            o.record_key == c.record_key,
            o.id != c.id,
            o.state.in_(UNFINISHED),
            sa.or_(o.id < c.id, sa.and_(o.state == "leased", o.available_at > now)),
        )
        .correlate(t_changes)
    )
    heads: list[Any] = []
    # One query per state, so that each walks the (state, available_at, id) index in order.
    for state in ("pending", "leased"):
        query = (
            sa.select(c.id, c.flow, c.record_key, c.available_at)
            .where(c.state == state, c.available_at <= now, ~blocked)
            .order_by(c.available_at, c.id)
            .limit(limit)
        )
        if flows is not None:
            query = query.where(c.flow.in_(sorted(flows)))
        if locking:
            query = query.with_for_update(skip_locked=True)
        heads.extend(conn.execute(query).all())
    heads.sort(key=lambda r: (r.available_at, r.id))
    return heads[:limit]
