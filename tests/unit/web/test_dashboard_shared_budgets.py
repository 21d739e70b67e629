"""The overview and the charts show the budgets every process counts together — Salesforce's daily
call windows and its requests in flight — against their limits, and never their bucket or slot rows."""

from __future__ import annotations

import time
from typing import Any

from starlette.testclient import TestClient

from crmsync.engine.runtime import Runtime
from crmsync.store.budgets import Slots, StoreBudgets, Window

from .test_dashboard_overview import api, states

__all__ = ["api"]  # the fixture


def test_the_shared_windows_and_slots_are_shown_against_their_limits(api: tuple[TestClient, Runtime]) -> None:
    client, rt = api
    book = StoreBudgets(rt.store)
    now = time.time()
    book.take(
        [Window("salesforce", "org calls 24 h", 15_000), Window("salesforce", "crmsync calls 24 h", 1000)],
        250,
        now,
    )
    slots = Slots("salesforce", "requests", 20, ttl=60.0)
    book.show_slots(slots, now)
    for n in range(3):
        assert book.acquire(slots, f"host:1:requests:{n}", now)
    book.close()

    shown: dict[str, Any] = {b["window"]: b for b in states(client)["salesforce"]["budget"]}
    assert set(shown) == {"org calls 24 h", "crmsync calls 24 h", "requests in flight"}
    assert (shown["crmsync calls 24 h"]["used"], shown["crmsync calls 24 h"]["limit"]) == (250, 1000)
    assert shown["crmsync calls 24 h"]["use"] == 0.25
    assert (shown["requests in flight"]["used"], shown["requests in flight"]["limit"]) == (3, 20)

    charts = client.get("/api/v1/dashboard/charts").json()["budgets"]
    assert sorted((b["window"], b["used"], b["limit"]) for b in charts) == [
        ("crmsync calls 24 h", 250, 1000),
        ("org calls 24 h", 250, 15_000),
        ("requests in flight", 3, 20),
    ]
