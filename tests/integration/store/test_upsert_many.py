"""A batch upsert in one statement, on SQLite, PostgreSQL and MariaDB alike."""

from __future__ import annotations

import sqlalchemy as sa

from crmsync.store import schema as t
from crmsync.store.db import Store, upsert_many


def rows(store: Store) -> dict[str, tuple[int, int | None]]:
    with store.read() as conn:
        return {r.connection: (r.used, r.limit_value) for r in conn.execute(sa.select(t.api_budget))}


def test_inserts_new_rows_and_updates_existing_ones(store: Store) -> None:
    now = t.utcnow()

    def row(name: str, used: int) -> dict[str, object]:
        return {"connection": name, "window": "daily", "used": used, "limit_value": 100, "updated_at": now}

    store.run(lambda c: upsert_many(c, t.api_budget, [row("a", 1), row("b", 2)], ("connection", "window")))
    store.run(lambda c: upsert_many(c, t.api_budget, [row("b", 5), row("c", 3)], ("connection", "window")))
    assert rows(store) == {"a": (1, 100), "b": (5, 100), "c": (3, 100)}
    store.run(lambda c: upsert_many(c, t.api_budget, [], ("connection", "window")))
    assert len(rows(store)) == 3
