"""What the engine remembers about records it has synced: links, shadow state, the sync log.

- ``links``: which record in the target is which record of the source (the key → the target id);
- ``shadow``: the source fields as last applied — lock rules find a record's parent with it when
  a delete or a partial correction does not name it;
- ``sync_log``: one row per outcome, so that what happened to any record is one query away;
- ``api_budget``: the vendors' reported API use, shared by every process.

Writes are batched: one transaction for a whole batch of applied changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from crmsync.connectors.base import ApiUsage, Write, WriteResult
from crmsync.engine.flows import FlowRuntime
from crmsync.engine.queue import ClaimedChange
from crmsync.errors import CrmsyncError
from crmsync.store import schema as t
from crmsync.store.db import Store

if TYPE_CHECKING:
    pass


def upsert_rows(
    conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]], keys: Sequence[str]
) -> None:
    """Insert ``rows``, or update the row with the same ``keys`` — on every supported database."""
    if not rows:
        return
    update_cols = [c for c in rows[0] if c not in keys]
    dialect = conn.dialect.name
    if dialect in ("postgresql", "sqlite"):
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        stmt = insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=list(keys), set_={c: stmt.excluded[c] for c in update_cols}
        )
        conn.execute(stmt, list(rows))
    elif dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert as my_insert

        mstmt = my_insert(table)
        mstmt = mstmt.on_duplicate_key_update({c: mstmt.inserted[c] for c in update_cols})
        conn.execute(mstmt, list(rows))
    else:  # pragma: no cover - every supported dialect is handled above
        raise RuntimeError(f"unsupported database {dialect}")


def _now() -> datetime:
    return datetime.now(UTC)


class Ledger:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- reads ---------------------------------------------------------------------------------------
    def target_id(self, flow: FlowRuntime, key: str) -> str | None:
        with self.store.read() as conn:
            value = conn.execute(
                sa.select(t.links.c.target_id).where(
                    t.links.c.flow == flow.name,
                    t.links.c.source_system == flow.source,
                    t.links.c.source_key == key,
                )
            ).scalar_one_or_none()
        return None if value is None else str(value)

    def last_synced(self, flow: FlowRuntime, key: str) -> Mapping[str, Any]:
        with self.store.read() as conn:
            fields = conn.execute(
                sa.select(t.shadow.c.fields).where(
                    t.shadow.c.system == flow.source,
                    t.shadow.c.object_name == flow.name,
                    t.shadow.c.record_id == key,
                )
            ).scalar_one_or_none()
        return fields or {}

    def history(
        self, flow: str | None = None, key: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        query = sa.select(t.sync_log).order_by(t.sync_log.c.id.desc()).limit(limit)
        if flow is not None:
            query = query.where(t.sync_log.c.flow == flow)
        if key is not None:
            query = query.where(t.sync_log.c.record_key == key)
        with self.store.read() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def budgets(self) -> dict[str, dict[str, Any]]:
        with self.store.read() as conn:
            rows = conn.execute(sa.select(t.api_budget).where(t.api_budget.c.window == "daily")).all()
        return {r.connection: {"used": r.used, "limit": r.limit_value, "at": str(r.updated_at)} for r in rows}

    # -- writes ----------------------------------------------------------------------------------------
    def applied(self, flow: FlowRuntime, done: Sequence[tuple[ClaimedChange, Write, WriteResult]]) -> None:
        now = _now()
        upserts = [(c, r) for c, w, r in done if w.operation != "delete"]
        deletes = [c.record_key for c, w, _ in done if w.operation == "delete"]
        keys = [c.record_key for c, _ in upserts]

        def work(conn: Connection) -> None:
            previous = self._shadows(conn, flow, keys)
            upsert_rows(
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
            upsert_rows(
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
            conn.execute(
                sa.insert(t.sync_log),
                [
                    self._log_row(
                        c,
                        "applied",
                        target=flow.target,
                        target_id=r.target_id,
                        at=now,
                        message="created" if r.created else None,
                    )
                    for c, _, r in done
                ],
            )

        self.store.run(work)

    def skipped(self, flow: FlowRuntime, change: ClaimedChange, message: str) -> None:
        self._log([self._log_row(change, "skipped", target=flow.target, message=message)])

    def retried(self, change: ClaimedChange, error: CrmsyncError) -> None:
        self._log([self._log_row(change, "retry", message=str(error))])

    def dead(self, change: ClaimedChange, error: CrmsyncError) -> None:
        self._log([self._log_row(change, "dead", message=str(error))])

    def save_budget(self, connection: str, usage: ApiUsage) -> None:
        row = {
            "connection": connection,
            "window": "daily",
            "used": usage.used,
            "limit_value": usage.limit,
            "updated_at": _now(),
        }
        self.store.run(lambda conn: upsert_rows(conn, t.api_budget, [row], ("connection", "window")))

    # -- helpers ---------------------------------------------------------------------------------------
    def _shadows(self, conn: Connection, flow: FlowRuntime, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        keys = list(keys)
        if not keys:
            return {}
        rows = conn.execute(
            sa.select(t.shadow.c.record_id, t.shadow.c.fields).where(
                t.shadow.c.system == flow.source,
                t.shadow.c.object_name == flow.name,
                t.shadow.c.record_id.in_(keys),
            )
        )
        return {r.record_id: r.fields for r in rows}

    def _log(self, rows: list[dict[str, Any]]) -> None:
        self.store.run(lambda conn: conn.execute(sa.insert(t.sync_log), rows) and None)

    @staticmethod
    def _log_row(
        change: ClaimedChange,
        outcome: str,
        *,
        target: str | None = None,
        target_id: str | None = None,
        message: str | None = None,
        at: datetime | None = None,
    ) -> dict[str, Any]:
        return {
            "at": at or _now(),
            "flow": change.flow,
            "record_key": change.record_key,
            "operation": change.operation,
            "source": change.source,
            "target": target,
            "outcome": outcome,
            "target_id": target_id,
            "message": message,
            "change_ids": list(change.change_ids),
            "attempt": change.attempts + 1,
        }
