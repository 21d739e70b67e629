"""What a person does about the sync, shared by the command line and the dashboard: one code path.

- dead letters: list (filtered), show, replay, discard with a reason — ``crmsync dead-letters``
  and the dashboard's Dead letters page;
- trace: a record's links and its sync log across systems, by any of its ids — ``crmsync log``
  and the dashboard's Trace page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, Literal

import sqlalchemy as sa

from crmsync.engine.queue import ChangeQueue, DeadLetter
from crmsync.store.db import StoreOrConnection, connection
from crmsync.store.links import Link
from crmsync.store.schema import links
from crmsync.store.synclog import LogEntry, query

LetterState = Literal["open", "replayed", "discarded"]


# ---------------------------------------------------------------- dead letters


def letter_state(letter: DeadLetter) -> LetterState:
    if letter.discarded_at is not None:
        return "discarded"
    if letter.replay_requested_at is not None:
        return "replayed"
    return "open"


def letter_as_dict(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter as JSON: the change, its fields, the vendor's error, its state."""
    return {
        "id": letter.id,
        "state": letter_state(letter),
        "flow": letter.flow,
        "source": letter.source,
        "record_key": letter.record_key,
        "operation": letter.operation,
        "fields": dict(letter.fields),
        "error": dict(letter.error),
        "attempts": letter.attempts,
        "change_ids": list(letter.change_ids),
        "created_at": letter.created_at.isoformat(),
        "replay_requested_at": letter.replay_requested_at and letter.replay_requested_at.isoformat(),
        "discarded_at": letter.discarded_at and letter.discarded_at.isoformat(),
        "discard_reason": letter.discard_reason,
    }


def list_letters(
    queue: ChangeQueue,
    *,
    flow: str | None = None,
    state: LetterState | None = None,
    search: str | None = None,
    limit: int = 100,
    include_discarded: bool = False,
) -> list[DeadLetter]:
    """Dead letters, newest first: of one flow, in one state, or whose record key or error
    message holds ``search`` (case-insensitive)."""
    wide = state is not None or search
    letters = queue.dead_letters(
        flow=flow,
        limit=limit * 10 if wide else limit,
        include_discarded=include_discarded or state == "discarded",
    )
    if state is not None:
        letters = [x for x in letters if letter_state(x) == state]
    if search:
        needle = search.lower()
        letters = [
            x
            for x in letters
            if needle in x.record_key.lower() or needle in str(x.error.get("message", "")).lower()
        ]
    return letters[:limit]


def replay_letters(queue: ChangeQueue, ids: Sequence[int]) -> int:
    """Queue the changes of these open dead letters again; returns how many were replayed."""
    return queue.replay(list(ids))


def discard_letters(queue: ChangeQueue, ids: Sequence[int], reason: str | None = None) -> int:
    """Discard these dead letters (kept for the record, with why); returns how many."""
    return queue.discard(list(ids), reason.strip() or None if reason else None)


# ---------------------------------------------------------------- trace


def find_links(db: StoreOrConnection, record_id: str, flow: str | None = None) -> list[Link]:
    """Every link with ``record_id`` on either side (as a source key or as a target id)."""
    c = links.c
    stmt = (
        sa.select(c.flow, c.source_system, c.source_key, c.target_system, c.target_id)
        .where(sa.or_(c.source_key == record_id, c.target_id == record_id))
        .order_by(c.flow, c.id)
    )
    if flow is not None:
        stmt = stmt.where(c.flow == flow)
    with connection(db, write=False) as conn:
        return [Link(*row) for row in conn.execute(stmt)]


def trace(
    db: StoreOrConnection, *, flow: str | None = None, record: str | None = None, limit: int = 50
) -> tuple[list[Link], list[LogEntry]]:
    """The links of ``record`` (none without one) and the newest ``limit`` sync log lines of the
    record and of its counterparts (or of everything, of ``flow`` if given), newest first."""
    if record is None:
        return [], query(db, flow, None, limit)
    found = find_links(db, record, flow)
    keys = {record} | {link.source_key for link in found} | {link.target_id for link in found}
    merged: dict[int | None, LogEntry] = {}
    for key in sorted(keys):
        for entry in query(db, flow, key, limit):
            merged[entry.id] = entry
    newest_first = sorted(merged.values(), key=lambda e: (e.at, e.id or 0), reverse=True)
    return found, newest_first[:limit]


def trace_as_json(record: str | None, found: list[Link], entries: list[LogEntry]) -> dict[str, Any]:
    lines = []
    for entry in entries:
        line = asdict(entry)
        line["at"] = entry.at.isoformat()
        line["change_ids"] = list(entry.change_ids) if entry.change_ids is not None else None
        lines.append(line)
    return {"record": record, "links": [asdict(link) for link in found], "entries": lines}
