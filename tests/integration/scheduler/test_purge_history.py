"""The purge-history job deletes finished changes and sync-log lines older than args.days only."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from crmsync.scheduler import runs
from crmsync.scheduler.scheduler import JobSpec, Scheduler, run_job
from crmsync.store import synclog
from crmsync.store.db import Store
from crmsync.store.schema import changes, sync_log, utcnow


def change(key: str, state: str, updated_at: datetime) -> dict[str, Any]:
    return {
        "source": "app",
        "flow": "usage",
        "record_key": key,
        "operation": "upsert",
        "payload": {"n": 1},
        "delivery_id": None,
        "state": state,
        "attempts": 0,
        "available_at": updated_at,
        "lease_owner": None,
        "leased_until": None,
        "created_at": updated_at - timedelta(days=1),
        "updated_at": updated_at,
        "last_error": None,
    }


def test_purge_history_deletes_only_what_is_old(store: Store) -> None:
    now = utcnow()
    old, recent = now - timedelta(days=8), now - timedelta(days=6)
    with store.begin() as conn:
        conn.execute(
            sa.insert(changes),
            [
                change("done-old", "done", old),
                change("done-recent", "done", recent),
                change("pending-old", "pending", old),
                change("dead-old", "dead", old),
            ],
        )
    for key, at in (("line-old", old), ("line-recent", recent)):
        synclog.record(store, flow="usage", record_key=key, outcome="applied", at=at)

    run = run_job(store, "purge", JobSpec("purge-history", "0 3 * * *", {"days": 7}))

    assert run.status == "succeeded", run.message
    assert run.message == "deleted 1 done changes and 1 sync-log lines older than 7 days"
    with store.read() as conn:
        kept_changes = set(conn.execute(sa.select(changes.c.record_key)).scalars())
        kept_lines = set(conn.execute(sa.select(sync_log.c.record_key)).scalars())
    assert kept_changes == {"done-recent", "pending-old", "dead-old"}
    assert kept_lines == {"line-recent"}


def test_purge_history_defaults_to_30_days_when_scheduled(store: Store, caplog: Any) -> None:
    now = utcnow()
    with store.begin() as conn:
        conn.execute(
            sa.insert(changes),
            [change("a", "done", now - timedelta(days=31)), change("b", "done", now - timedelta(days=28))],
        )
    moments = [now]
    scheduler = Scheduler(
        store, {"purge": JobSpec("purge-history", "0 3 * * *")}, owner="s", clock=lambda: moments[-1]
    )
    assert scheduler.tick() == []
    moments.append(now + timedelta(days=1))
    with caplog.at_level(logging.INFO, logger="crmsync.jobs.purge"):
        assert scheduler.tick() == ["purge"]
    assert "purged 1 done changes" in caplog.text
    (run,) = runs.recent(store, "purge")
    assert run.status == "succeeded"
    # by the scheduler's clock (a day on), "a" is 32 days old and "b" 29
    assert run.message == "deleted 1 done changes and 0 sync-log lines older than 30 days"
