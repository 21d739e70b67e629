"""The monday webhook receiver: authenticated before anything is parsed, bounded, 4xx for anything
malformed, signed tokens bound to one delivery, secret URLs, and late deliveries never roll back.

Tokens are made here with PyJWT directly (as monday signs them), not with crmsync's code.
"""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from crmsync.alerts.alerter import Alerter
from crmsync.alerts.testing import Outbox
from crmsync.engine.runtime import Runtime
from crmsync.store import schema
from crmsync.store import webhooks as receivers

from .conftest import MakeRuntime, OpenClient, salesforce_connection

SECRET = "a-signing-secret-long-enough-for-every-hmac-variant-0123456789abcdef"
BOARD = "1234567890"
BASE = "http://testserver"
HOOK = f"{BASE}/webhooks/monday/monday"

CONFIG = (
    """\
version: 1
store: {url: "%(store)s"}
connections:
"""
    + salesforce_connection()
    + """\
  monday:
    type: monday
    api_url: http://127.0.0.1:9/v2
    token: personal-token
%(extra)s
flows:
  leads:
    source: monday
    source_object: "%(board)s"
    target: salesforce
    object: Lead
    key: id
    fields:
      - {source: name, target: LastName}
      - {source: phone, target: Phone, direction: both}
"""
)


@pytest.fixture
def signed(make_runtime: MakeRuntime, open_client: OpenClient) -> tuple[TestClient, Runtime]:
    """monday's app: its deliveries carry a token signed with the app's secret."""
    runtime = make_runtime(
        CONFIG, extra=f"    app_token: app-token\n    signing_secret: {SECRET}", board=BOARD
    )
    return open_client(runtime), runtime


@pytest.fixture
def personal(make_runtime: MakeRuntime, open_client: OpenClient) -> tuple[TestClient, Runtime]:
    """A personal token: deliveries are unsigned and need the secret in the URL."""
    runtime = make_runtime(CONFIG, extra="", board=BOARD)
    return open_client(runtime), runtime


def token(aud: str = HOOK, secret: str = SECRET, **claims: Any) -> str:
    now = int(time.time())
    values = {"accountId": 1, "userId": 2, "aud": aud, "iat": now, "exp": now + 300, "shortLivedToken": "t"}
    values.update(claims)
    values["jti"] = f"{time.monotonic_ns()}"  # monday's tokens differ from one delivery to the next
    return jwt.encode({k: v for k, v in values.items() if v is not None}, secret, algorithm="HS256")


def update(value: str, changed_at: Any, trigger: str, column: str = "phone") -> dict[str, Any]:
    return {
        "event": {
            "app": "monday",
            "type": "update_column_value",
            "boardId": int(BOARD),
            "pulseId": 42,
            "columnId": column,
            "columnType": "phone",
            "value": {"phone": value, "countryShortName": "US"},
            "previousValue": None,
            "changedAt": changed_at,
            "triggerUuid": trigger,
        }
    }


def queued(runtime: Runtime) -> list[dict[str, Any]]:
    with runtime.store.read() as conn:
        rows = conn.execute(sa.select(schema.changes.c.payload).order_by(schema.changes.c.id)).all()
    return [dict(r.payload) for r in rows]


def refused_count(runtime: Runtime) -> int:
    return sum(r.refused for r in receivers.receivers(runtime.store))


# -- item: verify before parsing, bounded parse, 4xx for malformed ------------------------------


def test_an_unsigned_deeply_nested_body_is_refused_before_it_is_parsed(
    signed: tuple[TestClient, Runtime],
) -> None:
    client, runtime = signed
    reply = client.post("/webhooks/monday/monday", content=b"[" * 100_000)
    assert reply.status_code == 401
    assert queued(runtime) == []


def test_a_signed_deeply_nested_body_is_a_400(signed: tuple[TestClient, Runtime]) -> None:
    client, _ = signed
    reply = client.post("/webhooks/monday/monday", content=b"[" * 100_000, headers={"Authorization": token()})
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "malformed_event"


@pytest.mark.parametrize(
    "changed_at",
    ["1e20", "NaN", "-1e12", "Infinity", "1" * 5000],
    ids=["huge", "nan", "negative", "inf", "digits"],
)
def test_signed_events_with_impossible_change_times_are_a_400(
    signed: tuple[TestClient, Runtime], changed_at: str
) -> None:
    client, runtime = signed
    body = json.dumps(update("+1555", 0, "t-1")).replace('"changedAt": 0', f'"changedAt": {changed_at}')
    reply = client.post("/webhooks/monday/monday", content=body, headers={"Authorization": token()})
    assert reply.status_code == 400, reply.text
    assert queued(runtime) == []


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"\xff\xfe", b'{"challenge": {"a": 1}}', b'{"event": []}', b"[]", b'"x"'],
    ids=["empty", "garbage", "bad-utf8", "odd-challenge", "event-list", "list", "string"],
)
def test_malformed_bodies_are_a_4xx_never_a_500(signed: tuple[TestClient, Runtime], body: bytes) -> None:
    client, _ = signed
    reply = client.post("/webhooks/monday/monday", content=body, headers={"Authorization": token()})
    assert 400 <= reply.status_code < 500, reply.text


# -- item: the audience, expiry and single use of signed tokens --------------------------------


def test_a_token_for_another_url_is_refused(signed: tuple[TestClient, Runtime]) -> None:
    client, runtime = signed
    elsewhere = token(aud="https://other.example/webhooks/monday/monday")
    reply = client.post(
        "/webhooks/monday/monday", json=update("+1", time.time(), "a"), headers={"Authorization": elsewhere}
    )
    assert reply.status_code == 401 and "audience" in reply.json()["error"]["message"].lower()
    assert queued(runtime) == []


def test_an_expired_token_is_refused(signed: tuple[TestClient, Runtime]) -> None:
    client, _ = signed
    old = token(iat=int(time.time()) - 900, exp=int(time.time()) - 600)
    reply = client.post(
        "/webhooks/monday/monday", json=update("+1", time.time(), "a"), headers={"Authorization": old}
    )
    assert reply.status_code == 401


def test_a_captured_token_does_not_authorise_another_body(signed: tuple[TestClient, Runtime]) -> None:
    client, runtime = signed
    captured = token()
    genuine = json.dumps(update("+1555", time.time(), "genuine")).encode()
    forged = json.dumps(update("+1666", time.time() + 1, "forged")).encode()
    assert (
        client.post(
            "/webhooks/monday/monday", content=genuine, headers={"Authorization": captured}
        ).status_code
        == 200
    )
    resent = client.post("/webhooks/monday/monday", content=genuine, headers={"Authorization": captured})
    assert resent.status_code == 200 and resent.json()["duplicates"] == 1  # the same delivery again
    reply = client.post("/webhooks/monday/monday", content=forged, headers={"Authorization": captured})
    assert reply.status_code == 401 and "already used" in reply.json()["error"]["message"]
    assert [p["phone"] for p in queued(runtime)] == ["+1555"]


def test_used_tokens_are_pruned_once_expired(signed: tuple[TestClient, Runtime]) -> None:
    import datetime as dt

    _, runtime = signed
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    assert receivers.use_token(runtime.store, "a" * 64, "b" * 64, past)
    assert receivers.use_token(runtime.store, "c" * 64, "d" * 64, past + dt.timedelta(hours=1))
    with runtime.store.read() as conn:
        left = conn.execute(sa.select(schema.webhook_tokens.c.token_digest)).scalars().all()
    assert left == ["c" * 64]


def test_refusals_are_counted_in_the_store_and_the_metrics_and_alerted_once(
    signed: tuple[TestClient, Runtime],
) -> None:
    client, runtime = signed
    outbox = Outbox()
    runtime.alerter = Alerter(runtime.store, [], notify=outbox)
    for _ in range(3):
        assert client.post("/webhooks/monday/monday", json=update("+1", time.time(), "x")).status_code == 401
    assert refused_count(runtime) == 3
    metrics = client.get("/metrics").text
    assert 'crmsync_webhooks_refused_total{connection="monday"} 3.0' in metrics
    assert [s.title for s in outbox.sent] == ["[crmsync] webhooks of monday are failing"]
    assert "no Authorization header" in outbox.sent[0].body
    # a delivery that checks out again clears it, with one notice
    ok = client.post(
        "/webhooks/monday/monday", json=update("+1", time.time(), "y"), headers={"Authorization": token()}
    )
    assert ok.status_code == 200
    assert len(outbox.sent) == 2 and "arrive again" in outbox.sent[1].body


# -- personal tokens: a secret in the URL --------------------------------------------------------


def test_an_unsigned_delivery_needs_the_connection_s_url_secret(personal: tuple[TestClient, Runtime]) -> None:
    client, runtime = personal
    secret = receivers.receiver(runtime.store, "monday").url_secret
    event = update("+1555", time.time(), "u-1")
    assert client.post("/webhooks/monday/monday", json=event).status_code == 401
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert client.post(f"/webhooks/monday/monday/{wrong}", json=event).status_code == 401
    assert queued(runtime) == []
    assert client.post(f"/webhooks/monday/monday/{secret}", json={"challenge": "c1"}).json() == {
        "challenge": "c1"
    }
    reply = client.post(f"/webhooks/monday/monday/{secret}", json=event)
    assert reply.status_code == 200 and reply.json()["accepted"] == 1
    assert refused_count(runtime) == 2


def test_each_connection_s_secret_is_unguessable_and_stable(personal: tuple[TestClient, Runtime]) -> None:
    _, runtime = personal
    first = receivers.receiver(runtime.store, "monday").url_secret
    assert receivers.receiver(runtime.store, "monday").url_secret == first
    assert receivers.receiver(runtime.store, "other").url_secret != first
    assert len(first) >= 43


# -- out-of-order deliveries ---------------------------------------------------------------------


def test_an_older_change_arriving_after_a_newer_one_is_dropped(signed: tuple[TestClient, Runtime]) -> None:
    client, runtime = signed
    now = time.time()
    newest = client.post(
        "/webhooks/monday/monday",
        json=update("+2 newest", now + 0.01, "n"),
        headers={"Authorization": token()},
    )
    older = client.post(
        "/webhooks/monday/monday", json=update("+1 older", now, "o"), headers={"Authorization": token()}
    )
    assert newest.status_code == older.status_code == 200
    assert older.json()["accepted"] == 0 and older.json()["stale"] == ["phone"]
    assert [p["phone"] for p in queued(runtime)] == ["+2 newest"]
    # another field of the same item is not held back by it
    other = client.post(
        "/webhooks/monday/monday",
        json=update("x", now - 5, "e", column="email"),
        headers={"Authorization": token()},
    )
    assert other.json()["accepted"] == 1


def test_a_resent_delivery_with_the_same_change_time_is_not_stale(signed: tuple[TestClient, Runtime]) -> None:
    client, _ = signed
    event = update("+1555", time.time(), "same")
    assert (
        client.post("/webhooks/monday/monday", json=event, headers={"Authorization": token()}).json()[
            "accepted"
        ]
        == 1
    )
    again = client.post("/webhooks/monday/monday", json=event, headers={"Authorization": token()}).json()
    assert again == {"accepted": 0, "duplicates": 1}
