"""Monday.com webhooks: challenge handshake, payload shapes, retries, JWT on app webhooks."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crmsync.sandbox.faults import FaultRule
from crmsync.sandbox.monday import MondayEmulator
from crmsync.sandbox.runner import serve
from crmsync.sandbox.server import BackgroundServer


class Receiver:
    """A webhook endpoint that records what it gets; it can refuse challenges or fail deliveries."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.echo = True
        self.fail_next = 0
        self._cond = threading.Condition()
        self.app = Starlette(routes=[Route("/hook", self.handle, methods=["POST"])])

    async def handle(self, request: Request) -> Response:
        body = await request.json()
        with self._cond:
            self.received.append((dict(request.headers), body))
            self._cond.notify_all()
            failing = "event" in body and self.fail_next > 0
            if failing:
                self.fail_next -= 1
        if "challenge" in body:
            return JSONResponse({"challenge": body["challenge"]} if self.echo else {"ok": True})
        return Response(status_code=500 if failing else 200)

    def events(self) -> list[dict[str, Any]]:
        with self._cond:
            return [b["event"] for _, b in self.received if "event" in b]

    def wait_events(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len([1 for _, b in self.received if "event" in b]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
        return self.events()

    def reset(self) -> None:
        with self._cond:
            self.received.clear()
            self.echo = True
            self.fail_next = 0


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Receiver, str]]:
    rec = Receiver()
    with BackgroundServer(rec.app) as server:
        yield rec, server.url + "/hook"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[MondayEmulator, str]]:
    em = MondayEmulator(retry_delays=(0.05, 0.05, 0.05), webhook_timeout=2.0)
    with serve(em) as server:
        yield em, server.url + "/v2"


@pytest.fixture
def em(served: tuple[MondayEmulator, str], receiver: tuple[Receiver, str]) -> MondayEmulator:
    served[0].seed("demo")
    receiver[0].reset()
    return served[0]


def gql(served: tuple[MondayEmulator, str], query: str, token: str | None = None, **variables: Any) -> Any:
    em, url = served
    response = httpx.post(
        url,
        json={"query": query, "variables": variables},
        headers={"Authorization": token or em.token, "API-Version": "2026-10"},
        timeout=10,
    )
    assert response.status_code == 200
    return response.json()


SUBSCRIBE = """
mutation ($b: ID!, $u: String!, $e: WebhookEventType!, $c: JSON) {
  create_webhook(board_id: $b, url: $u, event: $e, config: $c) { id board_id event config }
}
"""


def subscribe(
    served: Any, em: MondayEmulator, url: str, event: str, config: Any = None, token: str | None = None
) -> Any:
    return gql(served, SUBSCRIBE, token, b=em.board_id("Leads"), u=url, e=event, c=config)


def test_challenge_handshake_creates_the_webhook(served: Any, em: MondayEmulator, receiver: Any) -> None:
    rec, url = receiver
    result = subscribe(served, em, url, "create_item")
    hook = result["data"]["create_webhook"]
    assert (
        hook["event"] == "create_item" and hook["board_id"] == em.board_id("Leads") and hook["config"] is None
    )
    headers, body = rec.received[0]
    assert set(body) == {"challenge"} and body["challenge"]
    assert "authorization" not in headers  # personal token: no signature
    listed = gql(served, "query ($b: ID!) { webhooks(board_id: $b) { id event } }", b=em.board_id("Leads"))
    assert listed["data"]["webhooks"] == [{"id": hook["id"], "event": "create_item"}]
    deleted = gql(served, "mutation ($i: ID!) { delete_webhook(id: $i) { id board_id } }", i=hook["id"])
    assert deleted["data"]["delete_webhook"]["id"] == hook["id"]
    assert em.webhooks() == []


def test_challenge_not_echoed_refuses_creation(served: Any, em: MondayEmulator, receiver: Any) -> None:
    rec, url = receiver
    rec.echo = False
    result = subscribe(served, em, url, "create_item")
    assert result["data"] == {"create_webhook": None}
    error = result["errors"][0]
    assert error["message"] == "Failed to communicate with URL provided."
    assert error["extensions"]["code"] == "InvalidArgumentException"
    assert len(rec.received) == 1 and em.webhooks() == []
    unreachable = subscribe(served, em, "http://127.0.0.1:9/hook", "create_item")
    assert unreachable["errors"][0]["message"] == "Failed to communicate with URL provided."


def test_delivery_payloads(served: Any, em: MondayEmulator, receiver: Any) -> None:
    rec, url = receiver
    for event in (
        "create_item",
        "change_column_value",
        "change_name",
        "item_moved_to_any_group",
        "item_archived",
        "item_deleted",
        "create_update",
    ):
        assert "errors" not in subscribe(served, em, url, event)
    leads = em.board_id("Leads")
    created = gql(
        served,
        'mutation ($b: ID!) { create_item(board_id: $b, item_name: "Kim", group_id: "topics") { id } }',
        b=leads,
    )["data"]["create_item"]["id"]
    em.ui_change_column(created, "status", {"label": "Qualified"})
    em.ui_change_column(created, "status", "Quote")
    em.ui_change_column(created, "date4", {"date": "2026-12-01"})
    em.ui_rename_item(created, "Kim Lee")
    em.ui_move_item(created, "group_mkr1qual")
    em.ui_add_update(created, "Met at the fair")
    em.ui_archive_item(created)
    em.ui_delete_item(created)
    assert em.dispatcher.wait_idle()
    events = rec.wait_events(9)
    assert [e["type"] for e in events] == [
        "create_pulse",
        "update_column_value",
        "update_column_value",
        "update_column_value",
        "update_name",
        "move_pulse_into_group",
        "create_update",
        "archive_pulse",
        "delete_pulse",
    ]
    for event in events:
        assert event["app"] == "monday" and event["boardId"] == int(leads)
        assert len(event["triggerUuid"]) == 32 and event["isRetry"] is False
        assert event["originalTriggerUuid"] is None and event["triggerTime"].endswith("Z")
    create, first, second, date, rename, move, update, archive, delete = events
    assert create["userId"] == 58_000_001  # the API user made it
    assert first["userId"] == 58_000_002  # a person in the UI
    assert {
        k: create[k] for k in ("pulseId", "pulseName", "groupId", "groupName", "isTopGroup", "columnValues")
    } == {
        "pulseId": int(created),
        "pulseName": "Kim",
        "groupId": "topics",
        "groupName": "New leads",
        "isTopGroup": True,
        "columnValues": {},
    }
    assert (
        first["columnType"] == "color" and first["columnId"] == "status" and first["columnTitle"] == "Status"
    )
    assert first["value"]["label"]["text"] == "Qualified" and first["value"]["label"]["index"] == 1
    assert (
        first["value"]["label"]["is_done"] is True and first["value"]["label"]["style"]["color"] == "#00c875"
    )
    assert first["previousValue"] is None and isinstance(first["changedAt"], float)
    assert (
        second["previousValue"]["label"]["text"] == "Qualified"
        and second["value"]["label"]["text"] == "Quote"
    )
    assert date["columnType"] == "date"
    assert {k: date["value"][k] for k in ("date", "icon", "time")} == {
        "date": "2026-12-01",
        "icon": None,
        "time": None,
    }
    assert rename["value"] == {"name": "Kim Lee"} and rename["previousValue"] == {"name": "Kim"}
    assert move["sourceGroupId"] == "topics" and move["destGroupId"] == "group_mkr1qual"
    assert move["destGroup"] == {
        "id": "group_mkr1qual",
        "title": "Qualified",
        "color": "#00c875",
        "is_top_group": False,
    }
    assert update["body"] == "<p>Met at the fair</p>" and update["textBody"] == "Met at the fair"
    assert update["pulseId"] == int(created) and update["replyId"] is None
    assert archive["itemId"] == int(created) and archive["itemName"] == "Kim Lee" and "pulseId" not in archive
    assert delete["itemId"] == int(created)


def test_specific_column_and_group_subscriptions(served: Any, em: MondayEmulator, receiver: Any) -> None:
    rec, url = receiver
    subscribe(served, em, url, "change_specific_column_value", json.dumps({"columnId": "text"}))
    subscribe(served, em, url, "item_moved_to_specific_group", {"groupId": "group_mkr2lost"})
    subscribe(served, em, url, "change_status_column_value")
    item = em.items(em.board_id("Leads"))[0]["id"]
    em.ui_change_values(item, {"numbers": "5", "text": "Acme Inc", "status": "Lost"})
    em.ui_move_item(item, "group_mkr1qual")
    em.ui_move_item(item, "group_mkr2lost")
    assert em.dispatcher.wait_idle()
    events = rec.wait_events(3)
    assert [(e["type"], e.get("columnId"), e.get("destGroupId")) for e in events] == [
        ("update_column_value", "text", None),
        ("update_column_value", "status", None),
        ("move_pulse_into_group", None, "group_mkr2lost"),
    ]
    assert events[0]["value"] == {"value": "Acme Inc"} and events[0]["previousValue"] == {
        "value": "Acme Corp"
    }


def test_failed_deliveries_are_retried_with_the_same_trigger_uuid(
    served: Any, em: MondayEmulator, receiver: Any
) -> None:
    rec, url = receiver
    em.add_webhook(em.board_id("Leads"), url, "change_name")
    rec.fail_next = 2
    em.ui_rename_item(em.items(em.board_id("Leads"))[0]["id"], "Jane Q. Cooper")
    events = rec.wait_events(3)
    assert em.dispatcher.wait_idle()
    assert len(events) == 3
    assert len({e["triggerUuid"] for e in events}) == 1
    assert [e["isRetry"] for e in events] == [False, True, True]
    assert [d["status"] for d in em.deliveries()] == [500, 500, 200]


def test_duplicate_fault_sends_the_same_trigger_twice(served: Any, em: MondayEmulator, receiver: Any) -> None:
    rec, url = receiver
    em.add_webhook(em.board_id("Leads"), url, "create_item")
    em.faults.add(FaultRule(webhook="duplicate", count=1))
    em.ui_create_item(em.board_id("Leads"), "Twice")
    events = rec.wait_events(2)
    assert em.dispatcher.wait_idle()
    assert len(events) == 2 and events[0] == events[1]


def test_app_webhooks_carry_a_jwt_signed_with_the_signing_secret(
    served: Any, em: MondayEmulator, receiver: Any
) -> None:
    rec, url = receiver
    result = subscribe(served, em, url, "change_column_value", token=em.app_token)
    assert "errors" not in result
    challenge_headers, _ = rec.received[0]
    jwt.decode(challenge_headers["authorization"], em.signing_secret, algorithms=["HS256"], audience=url)
    listed = gql(
        served,
        "query ($b: ID!) { webhooks(board_id: $b, app_webhooks_only: true) { id } }",
        b=em.board_id("Leads"),
    )
    assert listed["data"]["webhooks"] == [{"id": result["data"]["create_webhook"]["id"]}]
    em.ui_change_column(em.items(em.board_id("Leads"))[1]["id"], "numbers", "7500")
    rec.wait_events(1)
    headers, body = next((h, b) for h, b in rec.received if "event" in b)
    claims = jwt.decode(headers["authorization"], em.signing_secret, algorithms=["HS256"], audience=url)
    assert claims["accountId"] == 31415926 and claims["userId"] == 58_000_002
    assert claims["aud"] == url and claims["exp"] > claims["iat"]
    assert claims["shortLivedToken"] == em.app_token
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(
            headers["authorization"],
            "another-signing-secret-of-enough-bytes",
            algorithms=["HS256"],
            audience=url,
        )
    event = body["event"]
    assert event["columnType"] == "numeric" and event["value"] == {"value": 7500, "unit": None}
    assert event["previousValue"] == {"value": 5400, "unit": None}
