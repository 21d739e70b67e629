"""Dead letters: the changes the queue gave up on, kept until someone replays or discards them.

When a change cannot be applied as it is (*fix the data*), its rows become ``dead`` and one row of
``dead_letters`` holds the net change, the error and how often it was tried. A letter is *open*
until it is replayed or discarded; both are requests stamped on the letter (columns, not a state)::

    open ──► replayed  (replay_requested_at: its net change is queued again as new change rows)
      │         │
      └─────────┴────► discarded  (discarded_at, and why when given: kept for the record, hidden
                                   from the default listing)

A replayed letter of one event queues that event's metadata again (an event is never folded, so
such a letter holds one change id); the metadata of a change purged since is gone.

Every function runs in the caller's transaction; :class:`~crmsync.engine.queue.ChangeQueue` opens
it, stamps the time from its clock, and offers these as its dead-letter methods.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from crmsync.connectors.base import EventMeta
from crmsync.engine.queue_insert import change_row
from crmsync.engine.queue_values import ClaimedChange, NewChange, Operation, in_chunks
from crmsync.errors import CrmsyncError
from crmsync.store.schema import changes as t_changes
from crmsync.store.schema import dead_letters as t_dead


@dataclass(frozen=True)
class DeadLetter:
    id: int
    change_ids: tuple[int, ...]
    source: str
    flow: str
    record_key: str
    operation: Operation
    fields: Mapping[str, Any]
    error: Mapping[str, Any]
    attempts: int
    created_at: datetime
    replay_requested_at: datetime | None
    discarded_at: datetime | None
    discard_reason: str | None = None


def record(conn: Connection, claimed: ClaimedChange, error: CrmsyncError, now: datetime) -> int:
    """Write the dead letter of ``claimed`` (its net change, the error, the attempt that failed)
    and return its id; the caller has marked the change's rows dead."""
    result = conn.execute(
        sa.insert(t_dead).values(
            change_ids=list(claimed.change_ids),
            source=claimed.source,
            flow=claimed.flow,
            record_key=claimed.record_key,
            operation=claimed.operation,
            payload=dict(claimed.fields),
            error=error.to_dict(),
            attempts=claimed.attempts + 1,
            created_at=now,
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def count_open(conn: Connection) -> int:
    """How many letters are open (neither replayed nor discarded)."""
    d = t_dead.c
    query = (
        sa.select(sa.func.count())
        .select_from(t_dead)
        .where(d.discarded_at.is_(None), d.replay_requested_at.is_(None))
    )
    return int(conn.execute(query).scalar_one())


def listing(conn: Connection, *, flow: str | None, limit: int, include_discarded: bool) -> list[DeadLetter]:
    """Newest first."""
    d = t_dead.c
    query = sa.select(t_dead).order_by(d.id.desc()).limit(limit)
    if flow is not None:
        query = query.where(d.flow == flow)
    if not include_discarded:
        query = query.where(d.discarded_at.is_(None))
    return [_dead_letter(r) for r in conn.execute(query)]


def get(conn: Connection, id: int) -> DeadLetter | None:
    row = conn.execute(sa.select(t_dead).where(t_dead.c.id == id)).first()
    return _dead_letter(row) if row is not None else None


def replay(conn: Connection, ids: Sequence[int], now: datetime, *, locking: bool) -> int:
    """Enqueue the net change of each open letter of ``ids`` again (new change rows, same fields,
    and the event's metadata when the letter holds one event) and mark the letters replayed.
    Letters already replayed or discarded are left alone. Returns how many were replayed.
    ``locking``: lock the letters read (``FOR UPDATE``), where the database has row locks."""
    d = t_dead.c
    query = (
        sa.select(t_dead)
        .where(d.id.in_(list(ids)), d.replay_requested_at.is_(None), d.discarded_at.is_(None))
        .order_by(d.id)
    )
    if locking:
        query = query.with_for_update()
    letters = [_dead_letter(r) for r in conn.execute(query)]
    if not letters:
        return 0
    metas = _event_metas(conn, [x.change_ids[0] for x in letters if len(x.change_ids) == 1])
    new = [
        NewChange(
            x.source,
            x.flow,
            x.record_key,
            x.operation,
            x.fields,
            meta=metas.get(x.change_ids[0]) if len(x.change_ids) == 1 else None,
        )
        for x in letters
    ]
    conn.execute(sa.insert(t_changes), [change_row(n, now) for n in new])
    conn.execute(sa.update(t_dead).where(d.id.in_([x.id for x in letters])).values(replay_requested_at=now))
    return len(letters)


def _event_metas(conn: Connection, change_ids: Sequence[int]) -> dict[int, EventMeta]:
    """The event metadata of these changes (an event is never folded, so a dead letter of one
    event holds one change id); changes purged since are absent."""
    found: dict[int, EventMeta] = {}
    c = t_changes.c
    for chunk in in_chunks(list(change_ids)):
        for row in conn.execute(sa.select(c.id, c.meta).where(c.id.in_(chunk), c.meta.is_not(None))):
            meta = EventMeta.from_dict(row.meta)
            if meta is not None:
                found[row.id] = meta
    return found


def discard(conn: Connection, ids: Sequence[int], reason: str | None, now: datetime) -> int:
    """Mark the open letters of ``ids`` discarded at ``now`` (kept for the record, hidden from the
    default listing), with why when given; returns how many."""
    d = t_dead.c
    stmt = sa.update(t_dead).where(d.id.in_(list(ids)), d.discarded_at.is_(None))
    return int(conn.execute(stmt.values(discarded_at=now, discard_reason=reason)).rowcount)


def _dead_letter(row: Row[Any]) -> DeadLetter:
    return DeadLetter(
        id=row.id,
        change_ids=tuple(row.change_ids),
        source=row.source,
        flow=row.flow,
        record_key=row.record_key,
        operation=row.operation,
        fields=row.payload,
        error=row.error,
        attempts=row.attempts,
        created_at=row.created_at,
        replay_requested_at=row.replay_requested_at,
        discarded_at=row.discarded_at,
        discard_reason=row.discard_reason,
    )
