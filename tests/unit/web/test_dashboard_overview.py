"""``GET /api/v1/dashboard/overview``: each connection's state, read from the store (any replica
answers the same): paused with its reason, down when its newest write of the last minutes was
retried, ok otherwise; and its API budget against the vendor's limit. ``GET …/charts``: the
workload snapshot trend (cards per list per day) from a SQL reporting connection."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from crmsync.engine.runtime import Runtime
from crmsync.store import pauses, tokens
from crmsync.store import schema as t
from crmsync.store.schema import utcnow
from crmsync.store.synclog import LogEntry, record_many

from .conftest import MakeRuntime, OpenClient, orders_config, salesforce_connection

CONFIG = orders_config(
    connections=salesforce_connection("archive"),
    more="""\
  archived:
    source: shop
    target: archive
    object: Order__c
    key: order_id
    fields:
      - {source: order_id, target: Order_Id__c}
""",
)


@pytest.fixture
def api(make_runtime: MakeRuntime, open_client: OpenClient) -> tuple[TestClient, Runtime]:
    runtime = make_runtime(CONFIG, upgrade=True)
    return open_client(runtime, bearer=tokens.create_token(runtime.store, "app")), runtime


def states(client: TestClient) -> dict[str, dict[str, Any]]:
    r = client.get("/api/v1/dashboard/overview")
    assert r.status_code == 200, r.text
    return {c["name"]: c for c in r.json()["connections"]}


def write(rt: Runtime, flow: str, outcome: str, message: str, minutes_ago: float = 0) -> None:
    at = utcnow() - timedelta(minutes=minutes_ago)
    target = "salesforce" if flow == "orders" else "archive"
    entry = LogEntry(
        flow=flow,
        record_key="o-1",
        outcome=outcome,  # type: ignore[arg-type]
        source="shop",
        target=target if outcome == "applied" else None,  # as the ledger logs them
        message=message,
        at=at,
    )
    record_many(rt.store, [entry])


def test_a_connection_is_paused_down_or_ok_from_the_store(api: tuple[TestClient, Runtime]) -> None:
    client, rt = api
    assert {n: c["state"] for n, c in states(client).items()} == {
        "salesforce": "ok",
        "archive": "ok",
        "shop": "ok",
    }

    write(rt, "orders", "retry", "salesforce answered 503 Service Unavailable", minutes_ago=1)
    pauses.pause(rt.store, "archived", "archive", "INVALID_SESSION_ID: the password was changed", "d")
    found = states(client)
    assert found["salesforce"]["state"] == "down"
    assert found["salesforce"]["problem"] == "salesforce answered 503 Service Unavailable"
    assert found["salesforce"]["at"] is not None
    assert found["archive"]["state"] == "paused"
    assert found["archive"]["problem"] == "INVALID_SESSION_ID: the password was changed"
    assert found["shop"] == {**found["shop"], "state": "ok", "problem": None, "at": None}

    # a write that works again: up; an old failure is no longer news
    write(rt, "orders", "applied", "created")
    assert states(client)["salesforce"]["state"] == "ok"
    write(rt, "orders", "retry", "salesforce answered 503 Service Unavailable", minutes_ago=30)
    assert states(client)["salesforce"]["state"] == "ok"
    pauses.resume(rt.store, ["archived"])
    assert states(client)["archive"]["state"] == "ok"


def test_budget_use_is_read_against_the_vendors_limit(api: tuple[TestClient, Runtime]) -> None:
    client, rt = api
    with rt.store.begin() as conn:
        conn.execute(
            sa.insert(t.api_budget).values(
                connection="salesforce", window="daily", used=1500, limit_value=15000, updated_at=utcnow()
            )
        )
    (budget,) = states(client)["salesforce"]["budget"]
    assert budget["used"] == 1500 and budget["limit"] == 15000 and budget["use"] == 0.1
    assert states(client)["archive"]["budget"] == []


def test_the_charts_json_serves_the_workload_snapshot_trend(
    tmp_path: Path, make_runtime: MakeRuntime, open_client: OpenClient
) -> None:
    reporting = f"""  reporting:
    type: sql
    url: "sqlite:///{tmp_path / "reports.db"}"
"""
    job = """jobs:
  snapshot:
    job: workload-snapshot
    cron: "55 23 * * *"
    args: {board: shop, target: reporting}
"""
    runtime = make_runtime(CONFIG.replace("flows:", reporting + "flows:") + job, upgrade=True)
    reports = runtime.connector("reporting")
    reports.prepare()  # type: ignore[attr-defined]
    today = utcnow().date()
    rows = [
        (today - timedelta(days=1), "Doing", "ada", 2),
        (today - timedelta(days=1), "Doing", "bob", 1),
        (today - timedelta(days=1), "Done", "ada", 4),
        (today, "Doing", "ada", 1),
        (today, "Done", "ada", 7),
        (today - timedelta(days=90), "Done", "ada", 99),  # older than the chart's 30 days
    ]
    with reports.engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(
            sa.insert(reports.snapshot_table),  # type: ignore[attr-defined]
            [
                {
                    "snapshot_date": day,
                    "board": "shop",
                    "list_name": name,
                    "member": member,
                    "status": None,
                    "card_count": cards,
                    "taken_at": utcnow(),
                }
                for day, name, member, cards in rows
            ],
        )
    client = open_client(runtime, bearer=tokens.create_token(runtime.store, "app"))
    r = client.get("/api/v1/dashboard/charts")
    assert r.status_code == 200, r.text
    assert r.json()["workload"] == {
        "connection": "reporting",
        "days": [str(today - timedelta(days=1)), str(today)],
        "lists": {"Doing": [3, 1], "Done": [4, 7]},
    }
