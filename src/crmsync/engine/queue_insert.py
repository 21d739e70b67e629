"""Storing new changes in the queue, each delivery once.

A sender that repeats a delivery (a webhook retried, a poller reading the same page twice) must not
queue its change twice: a change with a ``delivery_id`` is stored only if no change of the same
``(source, delivery_id)`` is stored already or comes earlier in the same call, and is counted as a
duplicate otherwise — counted, not an error. The unique index on ``changes(source, delivery_id)``
settles races between concurrent transactions, and each dialect meets it its own way:

- PostgreSQL: one ``INSERT … ON CONFLICT DO NOTHING RETURNING`` names the rows it stored, with no
  look-up first and no savepoint;
- SQLite and MySQL/MariaDB: look the delivery ids up, insert the rest in a savepoint, and look
  again if a concurrent transaction committed one of them in between.

Every function runs in the caller's transaction; :class:`~crmsync.engine.queue.ChangeQueue`
commits it and wakes its workers.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from crmsync.engine.queue_values import EnqueueResult, NewChange, in_chunks
from crmsync.store.schema import changes as t_changes


def insert_groups(
    conn: Connection, dialect: str, groups: Sequence[Sequence[NewChange]], now: datetime
) -> list[EnqueueResult]:
    """Insert every group's changes whose delivery is new, queued at ``now``; one result per group,
    in order. A delivery id seen in an earlier group (or stored before) is a duplicate of the later
    group."""
    seen: set[tuple[str, str]] = set()
    unique: list[tuple[int, NewChange]] = []
    for index, changes in enumerate(groups):
        for change in changes:
            if change.delivery_id is not None:
                key = (change.source, change.delivery_id)
                if key in seen:
                    continue
                seen.add(key)
            unique.append((index, change))
    if dialect == "postgresql":
        return _insert_new(conn, groups, unique, now)
    for attempt in range(5):
        existing = delivered(conn, seen)
        kept = [
            (index, change)
            for index, change in unique
            if change.delivery_id is None or (change.source, change.delivery_id) not in existing
        ]
        try:
            if kept:
                with conn.begin_nested():
                    conn.execute(sa.insert(t_changes), [change_row(change, now) for _, change in kept])
        except IntegrityError:
            # A concurrent transaction committed one of these deliveries after we looked.
            if attempt == 4:
                raise
            continue
        accepted = [0] * len(groups)
        for index, _ in kept:
            accepted[index] += 1
        return [EnqueueResult(n, len(group) - n) for n, group in zip(accepted, groups, strict=True)]
    raise AssertionError("unreachable")


def _insert_new(
    conn: Connection,
    groups: Sequence[Sequence[NewChange]],
    unique: Sequence[tuple[int, NewChange]],
    now: datetime,
) -> list[EnqueueResult]:
    """PostgreSQL: one ``INSERT … ON CONFLICT DO NOTHING RETURNING`` stores the changes whose
    delivery id is new and names them; no look-up first and no savepoint. A concurrent
    transaction inserting the same delivery id makes this one wait for its outcome: committed,
    ours is the duplicate; rolled back, ours is stored."""
    c = t_changes.c
    statement = (
        pg_insert(t_changes)
        .on_conflict_do_nothing(index_elements=[c.source, c.delivery_id])
        .returning(c.source, c.delivery_id)
    )
    stored = {
        (r.source, r.delivery_id) for r in conn.execute(statement, [change_row(ch, now) for _, ch in unique])
    }
    accepted = [0] * len(groups)
    for index, change in unique:
        if change.delivery_id is None or (change.source, change.delivery_id) in stored:
            accepted[index] += 1
    return [EnqueueResult(n, len(group) - n) for n, group in zip(accepted, groups, strict=True)]


def delivered(conn: Connection, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of these (source, delivery_id) pairs are already stored (one read per chunk)."""
    by_source: dict[str, list[str]] = {}
    for source, delivery_id in keys:
        by_source.setdefault(source, []).append(delivery_id)
    found: set[tuple[str, str]] = set()
    c = t_changes.c
    for source, ids in by_source.items():
        for chunk in in_chunks(ids):
            query = sa.select(c.source, c.delivery_id).where(c.source == source, c.delivery_id.in_(chunk))
            found.update((r.source, r.delivery_id) for r in conn.execute(query))
    return found


def change_row(change: NewChange, now: datetime) -> dict[str, Any]:
    """The ``changes`` row of a new change, pending from ``now`` (also how a replayed dead letter
    is queued again)."""
    return {
        "source": change.source,
        "flow": change.flow,
        "record_key": change.record_key,
        "operation": change.operation,
        "payload": dict(change.fields),
        "delivery_id": change.delivery_id,
        "state": "pending",
        "attempts": 0,
        "available_at": now,
        "lease_owner": None,
        "leased_until": None,
        "created_at": now,
        "updated_at": now,
        "last_error": None,
        "meta": change.meta.to_dict() if change.meta is not None else None,
    }
