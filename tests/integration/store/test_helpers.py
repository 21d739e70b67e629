"""The store's small helpers, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from crmsync.errors import FixTheData
from crmsync.store import Store, leases, links, shadow, synclog, tokens, watermarks
from crmsync.store.schema import api_tokens, sync_log


def test_tokens_are_shown_once_and_stored_hashed(store: Store) -> None:
    token = tokens.create_token(store, "billing-app")
    assert token.startswith("cs_") and len(token) == 43
    with store.read() as conn:
        row = conn.execute(sa.select(api_tokens)).one()
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert row.prefix == token[:8] and token not in {str(v) for v in row}
    assert tokens.verify_token(store, token) == "billing-app"
    assert tokens.verify_token(store, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert tokens.verify_token(store, "") is None
    [info] = tokens.list_tokens(store)
    assert info.name == "billing-app" and info.last_used_at is not None and info.revoked_at is None
    with pytest.raises(ValueError, match="already exists"):
        tokens.create_token(store, "billing-app")
    assert tokens.revoke_token(store, "billing-app")
    assert not tokens.revoke_token(store, "billing-app")
    assert tokens.verify_token(store, token) is None


def test_links_map_both_ways_and_refuse_a_second_source_for_one_target(store: Store) -> None:
    assert links.get_link(store, "w3", "app", "u1") is None
    links.put_link(store, "w3", "app", "u1", "salesforce", "a01")
    links.put_link(store, "w3", "app", "u1", "salesforce", "a02")  # relinked
    link = links.get_link(store, "w3", "app", "u1")
    assert link is not None and link.target_id == "a02"
    assert links.find_by_target(store, "w3", "salesforce", "a02") == link
    assert links.find_by_target(store, "w3", "salesforce", "a01") is None
    assert links.get_link(store, "other-flow", "app", "u1") is None
    with pytest.raises(FixTheData, match="already linked"):
        links.put_link(store, "w3", "app", "u2", "salesforce", "a02")
    assert links.get_link(store, "w3", "app", "u2") is None


def test_links_join_the_callers_transaction(store: Store) -> None:
    with pytest.raises(RuntimeError), store.begin() as conn:
        links.put_link(conn, "w3", "app", "u1", "salesforce", "a01")
        assert links.get_link(conn, "w3", "app", "u1") is not None
        raise RuntimeError("rolled back")
    assert links.get_link(store, "w3", "app", "u1") is None


def test_shadow_merges_fields_unless_replaced(store: Store) -> None:
    assert shadow.get_shadow(store, "trello", "card", "c1") is None
    shadow.put_shadow(store, "trello", "card", "c1", {"name": "A", "due": None})
    assert shadow.put_shadow(store, "trello", "card", "c1", {"name": "B"}) == {"name": "B", "due": None}
    assert shadow.get_shadow(store, "trello", "card", "c1") == {"name": "B", "due": None}
    shadow.put_shadow(store, "trello", "card", "c2", {"x": 1}, replace=True)
    shadow.put_shadow(store, "trello", "card", "c2", {"y": 2}, replace=True)
    assert shadow.get_shadows(store, "trello", "card", ["c1", "c2", "c3"]) == {
        "c1": {"name": "B", "due": None},
        "c2": {"y": 2},
    }
    assert shadow.delete_shadow(store, "trello", "card", "c2")
    assert shadow.get_shadow(store, "trello", "card", "c2") is None


def test_watermarks(store: Store) -> None:
    assert watermarks.get(store, "sf", "Task") is None
    watermarks.put(store, "sf", "Task", "2024-05-01T00:00:00Z")
    watermarks.put(store, "sf", "Task", "2024-05-02T00:00:00Z")
    watermarks.put(store, "sf", "Account", "x")
    assert watermarks.get(store, "sf", "Task") == "2024-05-02T00:00:00Z"
    assert watermarks.get(store, "sf", "Account") == "x"


def test_sync_log_records_and_queries_newest_first(store: Store) -> None:
    synclog.record(store, flow="w3", record_key="u1", outcome="received", source="app", change_ids=[1])
    synclog.record(
        store, flow="w3", record_key="u1", outcome="applied", target="sf", target_id="a01", attempt=1
    )
    synclog.record(store, flow="w1", record_key="t1", outcome="dead", message="REQUIRED_FIELD_MISSING")
    assert [e.outcome for e in synclog.query(store)] == ["dead", "applied", "received"]
    entries = synclog.query(store, flow="w3", record_key="u1")
    assert [e.outcome for e in entries] == ["applied", "received"]
    assert entries[0].target_id == "a01" and entries[1].change_ids == [1]
    assert entries[0].at.tzinfo is not None
    assert [e.record_key for e in synclog.query(store, outcome="dead")] == ["t1"]
    assert len(synclog.query(store, limit=1)) == 1
    with pytest.raises(ValueError, match="unknown outcome"):
        synclog.record(store, flow="w3", record_key="u1", outcome="bogus")  # type: ignore[arg-type]
    row = {"at": datetime.now(UTC), "flow": "w3", "record_key": "u1", "outcome": "bogus"}
    with pytest.raises(sa.exc.DBAPIError), store.begin() as conn:  # the CHECK constraint holds too
        conn.execute(sa.insert(sync_log).values(**row))


def test_leases_give_one_owner_at_a_time(store: Store) -> None:
    now = datetime(2024, 5, 1, tzinfo=UTC)
    assert leases.try_acquire(store, "job:daily", "host-a", 60, now=now)
    assert not leases.try_acquire(store, "job:daily", "host-b", 60, now=now + timedelta(seconds=30))
    assert leases.try_acquire(store, "job:daily", "host-a", 60, now=now + timedelta(seconds=30))  # renewed
    assert not leases.try_acquire(store, "job:daily", "host-b", 60, now=now + timedelta(seconds=89))
    assert leases.try_acquire(store, "job:daily", "host-b", 60, now=now + timedelta(seconds=90))  # expired
    assert leases.holder(store, "job:daily", now=now + timedelta(seconds=100)) == "host-b"
    assert not leases.release(store, "job:daily", "host-a")
    assert leases.release(store, "job:daily", "host-b")
    assert leases.holder(store, "job:daily") is None
    assert leases.try_acquire(store, "job:daily", "host-a", 60)
