"""The sync log: one line per thing that happened to a record (received, applied, retried,
refused, dead...), so that what happened to any record is one query away."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Literal

import sqlalchemy as sa

from crmsync.store.db import StoreOrConnection, connection
from crmsync.store.schema import LOG_OUTCOMES, sync_log, utcnow

Outcome = Literal["applied", "retry", "dead", "refused", "skipped", "conflict", "received"]


@dataclass(frozen=True)
class LogEntry:
    flow: str
    record_key: str
    outcome: Outcome
    operation: str | None = None
    source: str | None = None
    target: str | None = None
    target_id: str | None = None
    message: str | None = None
    change_ids: Sequence[int] | None = None
    attempt: int | None = None
    at: datetime = field(default_factory=utcnow)
    id: int | None = None


def record(
    db: StoreOrConnection,
    *,
    flow: str,
    record_key: str,
    outcome: Outcome,
    operation: str | None = None,
    source: str | None = None,
    target: str | None = None,
    target_id: str | None = None,
    message: str | None = None,
    change_ids: Sequence[int] | None = None,
    attempt: int | None = None,
    at: datetime | None = None,
) -> None:
    """Write one line."""
    entry = LogEntry(
        flow,
        record_key,
        outcome,
        operation,
        source,
        target,
        target_id,
        message,
        change_ids,
        attempt,
        at or utcnow(),
    )
    record_many(db, [entry])


def record_many(db: StoreOrConnection, entries: Sequence[LogEntry]) -> None:
    """Write many lines in one statement (a worker's whole batch)."""
    if not entries:
        return
    rows = []
    for entry in entries:
        if entry.outcome not in LOG_OUTCOMES:
            raise ValueError(f"unknown outcome {entry.outcome!r}: expected one of {', '.join(LOG_OUTCOMES)}")
        row = asdict(entry)
        row.pop("id")
        row["change_ids"] = list(entry.change_ids) if entry.change_ids is not None else None
        rows.append(row)
    with connection(db) as conn:
        conn.execute(sa.insert(sync_log), rows)


def query(
    db: StoreOrConnection,
    flow: str | None = None,
    record_key: str | None = None,
    limit: int = 100,
    *,
    outcome: Outcome | None = None,
) -> list[LogEntry]:
    """The latest lines, newest first, optionally of one flow, record or outcome."""
    c = sync_log.c
    stmt = sa.select(sync_log).order_by(c.id.desc()).limit(limit)
    if flow is not None:
        stmt = stmt.where(c.flow == flow)
    if record_key is not None:
        stmt = stmt.where(c.record_key == record_key)
    if outcome is not None:
        stmt = stmt.where(c.outcome == outcome)
    with connection(db, write=False) as conn:
        return [
            LogEntry(
                flow=r.flow,
                record_key=r.record_key,
                outcome=r.outcome,
                operation=r.operation,
                source=r.source,
                target=r.target,
                target_id=r.target_id,
                message=r.message,
                change_ids=r.change_ids,
                attempt=r.attempt,
                at=r.at,
                id=r.id,
            )
            for r in conn.execute(stmt)
        ]
