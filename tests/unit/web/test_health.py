"""/readyz says why crmsync cannot work (store, refused login, paused flow); /metrics survives the store."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from crmsync.alerts import auth_failure, auth_ok
from crmsync.engine.runtime import Runtime
from crmsync.errors import Fatal
from crmsync.store import pauses

from .conftest import MakeRuntime, OpenClient, orders_config


@pytest.fixture
def app(make_runtime: MakeRuntime, open_client: OpenClient) -> tuple[TestClient, Runtime]:
    runtime = make_runtime(orders_config())
    return open_client(runtime), runtime


@pytest.fixture
def down(make_runtime: MakeRuntime, open_client: OpenClient) -> tuple[TestClient, Runtime]:
    runtime = make_runtime(orders_config(), store="postgresql+psycopg://postgres:SECRET-pw@127.0.0.1:1/x")
    return open_client(runtime), runtime


def test_metrics_answer_503_with_the_process_figures_when_the_store_is_down(
    down: tuple[TestClient, Runtime],
) -> None:
    client, runtime = down
    runtime.metrics.received("orders", 3, 0)
    reply = client.get("/metrics")
    assert reply.status_code == 503
    assert "crmsync_store_up 0.0" in reply.text
    assert 'crmsync_changes_received_total{flow="orders"} 3.0' in reply.text
    assert "crmsync_queue_depth" not in reply.text


def test_metrics_say_the_store_is_up(app: tuple[TestClient, Runtime]) -> None:
    client, _ = app
    reply = client.get("/metrics")
    assert reply.status_code == 200 and "crmsync_store_up 1.0" in reply.text


def test_readyz_names_a_store_that_is_down_without_its_password(down: tuple[TestClient, Runtime]) -> None:
    client, _ = down
    reply = client.get("/readyz")
    assert reply.status_code == 503
    body = reply.json()
    assert body["status"] == "not ready" and body["store"] == "unreachable"
    assert "postgres:********@127.0.0.1:1/x cannot be reached" in body["reasons"][0]
    assert "SECRET-pw" not in reply.text


def test_a_refused_login_and_a_paused_flow_make_crmsync_not_ready(app: tuple[TestClient, Runtime]) -> None:
    client, runtime = app
    assert client.get("/readyz").json() == {
        "status": "ready",
        "reasons": [],
        "store": "ok",
        "login_refused": {},
        "paused_flows": {},
    }
    auth_failure(runtime.alerter, "salesforce", Fatal("invalid_client: check SALESFORCE_CLIENT_ID"))
    reply = client.get("/readyz")
    assert reply.status_code == 503
    assert "salesforce" in reply.json()["login_refused"]
    assert "refused crmsync's credentials" in reply.json()["reasons"][0]
    assert "SALESFORCE_CLIENT_ID" in reply.json()["reasons"][0]

    auth_ok(runtime.alerter, "salesforce")
    pauses.pause(runtime.store, "orders", "salesforce", "credentials refused", "digest")
    reply = client.get("/readyz")
    assert reply.status_code == 503
    assert reply.json()["paused_flows"] == {
        "orders": {"connection": "salesforce", "reason": "credentials refused"}
    }
    assert reply.json()["reasons"] == ["flow orders paused (salesforce): credentials refused"]

    pauses.resume(runtime.store, ["orders"])
    assert client.get("/readyz").status_code == 200
