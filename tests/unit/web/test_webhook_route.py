"""One webhook route for every connection whose connector receives webhooks."""

from __future__ import annotations

import time

from starlette.testclient import TestClient

from crmsync.engine.runtime import Runtime
from crmsync.store import webhooks as receivers

from .test_monday_webhooks import queued, signed, token, update

__all__ = ["signed"]  # the fixture


def test_the_connection_route_takes_signed_deliveries_for_its_own_url(
    signed: tuple[TestClient, Runtime],
) -> None:
    client, runtime = signed
    here = "http://testserver/webhooks/monday"
    reply = client.post(
        "/webhooks/monday", json=update("+1", time.time(), "t-1"), headers={"Authorization": token(here)}
    )
    assert reply.status_code == 200 and reply.json()["accepted"] == 1
    assert queued(runtime)[0]["phone"] == "+1"


def test_the_monday_alias_keeps_answering_on_secret_urls(signed: tuple[TestClient, Runtime]) -> None:
    client, runtime = signed
    secret = receivers.receiver(runtime.store, "monday").url_secret
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert (
        client.post(f"/webhooks/monday/monday/{wrong}", json=update("+2", time.time(), "t-2")).status_code
        == 401
    )
    reply = client.post(f"/webhooks/monday/monday/{secret}", json=update("+2", time.time(), "t-2"))
    assert reply.status_code == 200 and reply.json()["accepted"] == 1


def test_a_connection_that_receives_no_webhooks_is_a_404(signed: tuple[TestClient, Runtime]) -> None:
    client, _ = signed
    reply = client.post("/webhooks/salesforce", json={"challenge": "c"})
    assert reply.status_code == 404
    assert "receives webhooks" in reply.json()["error"]["message"]
    assert client.post("/webhooks/nobody", json={"challenge": "c"}).status_code == 404
