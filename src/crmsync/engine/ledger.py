"""What the engine remembers about records it has synced: links, shadow state, the sync log.

- ``links``: which record in the target is which record of the source (the key → the target id);
- ``shadow``: the source fields as last applied — lock rules find a record's parent with it when
  a delete or a partial correction does not name it;
- ``sync_log``: one line per outcome, so that what happened to any record is one query away;
- ``api_budget``: the vendors' reported API use, and the budgets every process counts together
  (kept by :mod:`crmsync.store.budgets`, shown through :mod:`crmsync.store.budget_view`).

Built on the store's helpers (:mod:`crmsync.store.links`, :mod:`~crmsync.store.shadow`,
:mod:`~crmsync.store.synclog`); a batch of applied changes is recorded in one transaction.

Every outcome is also one line in the process's log (logger ``crmsync.engine.ledger``): an
applied batch and a retry at INFO, a dead letter at WARNING, a skip at DEBUG, e.g.::

    flow usage: 12 records applied to salesforce Usage__c (10 created, 2 updated), latency 0.84 s
    flow usage: record 'u-7' failed, retried later (attempt 2, latency 3.10 s): RetryLater: ...

The latency is the time from the change's arrival in the queue to its outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from crmsync.connectors.base import ApiUsage, Write, WriteResult
from crmsync.engine.flows import FlowRuntime
from crmsync.engine.queue import ClaimedChange
from crmsync.errors import CrmsyncError
from crmsync.store import budget_view, links, shadow, synclog
from crmsync.store import schema as t
from crmsync.store.db import Store, upsert_many
from crmsync.store.synclog import LogEntry, Outcome

log = logging.getLogger(__name__)

#: the longest error message quoted in a log line
MESSAGE_LENGTH = 300


class Ledger:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- reads ---------------------------------------------------------------------------------------
    def target_id(self, flow: FlowRuntime, key: str) -> str | None:
        link = links.get_link(self.store, flow.name, flow.source, key)
        return None if link is None else link.target_id

    def last_synced(self, flow: FlowRuntime, key: str) -> Mapping[str, Any]:
        return shadow.get_shadow(self.store, flow.source, flow.name, key) or {}

    def history(
        self, flow: str | None = None, key: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        return [vars(entry) for entry in synclog.query(self.store, flow, key, limit)]

    def budgets(self) -> dict[str, dict[str, Any]]:
        with self.store.read() as conn:
            rows = conn.execute(sa.select(t.api_budget).where(t.api_budget.c.window == "daily")).all()
        return {r.connection: {"used": r.used, "limit": r.limit_value, "at": str(r.updated_at)} for r in rows}

    def shared_budgets(self) -> list[dict[str, Any]]:
        """The budgets every process counts together (daily call windows, requests in flight)."""
        with self.store.read() as conn:
            rows = budget_view.shown(conn)
        return [
            {
                "connection": r.connection,
                "window": r.window,
                "used": r.used,
                "limit": r.limit,
                "at": str(r.at),
            }
            for r in rows
            if r.window != "daily"
        ]

    # -- writes ----------------------------------------------------------------------------------------
    def applied(self, flow: FlowRuntime, done: Sequence[tuple[ClaimedChange, Write, WriteResult]]) -> None:
        upserts = [(c, r) for c, w, r in done if w.operation != "delete"]
        deletes = [c.record_key for c, w, _ in done if w.operation == "delete"]

        def work(conn: Connection) -> None:
            now = t.utcnow()
            previous = shadow.get_shadows(conn, flow.source, flow.name, [c.record_key for c, _ in upserts])
            upsert_many(
                conn,
                t.links,
                [
                    {
                        "flow": flow.name,
                        "source_system": flow.source,
                        "source_key": c.record_key,
                        "target_system": flow.target,
                        "target_id": r.target_id,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for c, r in upserts
                    if r.target_id
                ],
                ("flow", "source_system", "source_key"),
            )
            upsert_many(
                conn,
                t.shadow,
                [
                    {
                        "system": flow.source,
                        "object_name": flow.name,
                        "record_id": c.record_key,
                        "fields": {**previous.get(c.record_key, {}), **c.fields},
                        "updated_at": now,
                    }
                    for c, _ in upserts
                ],
                ("system", "object_name", "record_id"),
            )
            if deletes:
                conn.execute(
                    sa.delete(t.links).where(
                        t.links.c.flow == flow.name,
                        t.links.c.source_system == flow.source,
                        t.links.c.source_key.in_(deletes),
                    )
                )
                conn.execute(
                    sa.delete(t.shadow).where(
                        t.shadow.c.system == flow.source,
                        t.shadow.c.object_name == flow.name,
                        t.shadow.c.record_id.in_(deletes),
                    )
                )
            synclog.record_many(
                conn,
                [
                    _entry(
                        c,
                        "applied",
                        target=flow.target,
                        target_id=r.target_id,
                        message="created" if r.created else None,
                    )
                    for c, _, r in done
                ],
            )

        self.store.run(work)
        _log_applied(flow, done)

    def applied_one(
        self, flow: FlowRuntime, change: ClaimedChange, message: str, *, operation: str | None = None
    ) -> None:
        """One change applied; ``operation``: what it did to the record written (default: the change's)."""
        target = flow.target if change.source == flow.source else flow.source
        entry = _entry(change, "applied", target=target, message=message, operation=operation)
        synclog.record_many(self.store, [entry])
        log.info(
            "flow %s: record %r applied to %s (%s), latency %.2f s",
            flow.name,
            change.record_key,
            target,
            _one_line(message),
            _latency([change]),
        )

    def skipped(self, flow: FlowRuntime, change: ClaimedChange, message: str) -> None:
        synclog.record_many(self.store, [_entry(change, "skipped", target=flow.target, message=message)])
        log.debug("flow %s: record %r skipped: %s", flow.name, change.record_key, _one_line(message))

    def retried(self, change: ClaimedChange, error: CrmsyncError) -> None:
        synclog.record_many(self.store, [_entry(change, "retry", message=str(error))])
        log.info(
            "flow %s: record %r failed, retried later (attempt %d, latency %.2f s): %s",
            change.flow,
            change.record_key,
            change.attempts + 1,
            _latency([change]),
            _describe(error),
        )

    def dead(self, change: ClaimedChange, error: CrmsyncError) -> None:
        synclog.record_many(self.store, [_entry(change, "dead", message=str(error))])
        log.warning(
            "flow %s: record %r failed for good, now a dead letter (attempt %d, latency %.2f s): %s",
            change.flow,
            change.record_key,
            change.attempts + 1,
            _latency([change]),
            _describe(error),
        )

    def save_budget(self, connection: str, usage: ApiUsage) -> None:
        row = {
            "connection": connection,
            "window": "daily",
            "used": usage.used,
            "limit_value": usage.limit,
            "updated_at": t.utcnow(),
        }
        self.store.run(lambda conn: upsert_many(conn, t.api_budget, [row], ("connection", "window")))


def _log_applied(flow: FlowRuntime, done: Sequence[tuple[ClaimedChange, Write, WriteResult]]) -> None:
    if not done:
        return
    deleted = sum(1 for _, w, _ in done if w.operation == "delete")
    created = sum(1 for _, w, r in done if w.operation != "delete" and r.created)
    parts = [
        f"{n} {what}"
        for n, what in (
            (created, "created"),
            (len(done) - created - deleted, "updated"),
            (deleted, "deleted"),
        )
        if n
    ]
    log.info(
        "flow %s: %d record%s applied to %s %s (%s), latency %.2f s",
        flow.name,
        len(done),
        "" if len(done) == 1 else "s",
        flow.target,
        flow.object_name,
        ", ".join(parts),
        _latency(c for c, _, _ in done),
    )


def _latency(changes: Iterable[ClaimedChange]) -> float:
    """Seconds from the arrival of the oldest of ``changes`` until now."""
    now = datetime.now(UTC)
    ages = [
        (now - (c.created_at if c.created_at.tzinfo else c.created_at.replace(tzinfo=UTC))) for c in changes
    ]
    return max(0.0, max(age.total_seconds() for age in ages)) if ages else 0.0


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MESSAGE_LENGTH else line[: MESSAGE_LENGTH - 3] + "..."


def _describe(error: BaseException) -> str:
    return _one_line(f"{type(error).__name__}: {error}")


def _entry(
    change: ClaimedChange,
    outcome: Outcome,
    *,
    target: str | None = None,
    target_id: str | None = None,
    message: str | None = None,
    operation: str | None = None,
) -> LogEntry:
    return LogEntry(
        flow=change.flow,
        record_key=change.record_key,
        outcome=outcome,
        operation=operation or change.operation,
        source=change.source,
        target=target,
        target_id=target_id,
        message=message,
        change_ids=list(change.change_ids),
        attempt=change.attempts + 1,
    )
