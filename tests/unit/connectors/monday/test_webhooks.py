"""Webhook deliveries: the events of the seed and of the emulator parsed, the JWT checked."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from crmsync.connectors.monday.webhooks import (
    MalformedEvent,
    MondayEvent,
    WebhookRefused,
    challenge_reply,
    parse_event,
    verify_request,
)
from crmsync.sandbox.monday import MondayEmulator

SECRET = "a-signing-secret-long-enough-for-every-hmac-variant-0123456789abcdef"
URL = "https://crmsync.example.org/webhooks/monday/leads"

#: the seed's captured update_column_value payload (masked values kept as they were)
SEED_PAYLOAD = {
    "event": {
        "app": "monday",
        "type": "update_column_value",
        "triggerTime": "2025-07-24T09:12:56.368Z",
        "subscriptionId": "*****",
        "isRetry": False,
        "userId": "*****",
        "originalTriggerUuid": None,
        "boardId": "*****",
        "groupId": "*****",
        "pulseId": "*****",
        "pulseName": "*****",
        "columnId": "*****",
        "columnType": "text",
        "columnTitle": "*****",
        "value": {"value": "Data Engineer"},
        "previousValue": {"value": "Applied Statistics Student"},
        "changedAt": "*****",
        "isTopGroup": True,
        "triggerUuid": "*****",
    }
}


def test_the_seed_payload() -> None:
    event = parse_event(json.dumps(SEED_PAYLOAD).encode())
    assert event == MondayEvent(
        kind="update",
        board_id="*****",
        item_id="*****",
        trigger_uuid="*****",
        fields={"*****": "Data Engineer"},
        previous={"*****": "Applied Statistics Student"},
        group_id="*****",
        at=dt.datetime(2025, 7, 24, 9, 12, 56, 368000, tzinfo=dt.UTC),
    )


@pytest.fixture(scope="module")
def deliveries() -> Iterator[dict[str, dict[str, Any]]]:
    """One delivery body of each kind, as the emulator builds them (taken where it would send them)."""
    captured: list[dict[str, Any]] = []
    emu = MondayEmulator()
    emu.seed("demo")
    emu.hub.deliver = lambda webhook, event_type, fields, trigger, *, user_id: captured.append(  # type: ignore[method-assign]
        {
            "event": {
                "app": "monday",
                "type": event_type,
                "triggerTime": "2026-11-22T04:41:00.000Z",
                "subscriptionId": webhook.id,
                "isRetry": False,
                "userId": user_id,
                "originalTriggerUuid": None,
                "boardId": webhook.board_id,
                **fields,
                "triggerUuid": trigger,
            }
        }
    )
    board = emu.board_id("Leads")
    for event in (
        "create_item",
        "change_column_value",
        "change_name",
        "item_deleted",
        "item_archived",
        "item_moved_to_any_group",
    ):
        emu.add_webhook(board, "http://127.0.0.1:9/hook", event)
    item = emu.ui_create_item(
        board, "Kim Lee", values={"status": {"label": "New"}, "numbers": "12", "email": "kim@lee.example kim"}
    )
    emu.ui_change_column(item, "status", {"label": "Qualified"})
    emu.ui_change_column(item, "date4", {"date": "2025-02-05", "time": "10:00:00"})
    emu.ui_change_column(item, "person", {"personsAndTeams": [{"id": 58_000_002, "kind": "person"}]})
    emu.ui_rename_item(item, "Kim Lee-Park")
    emu.ui_move_item(item, emu.group_id(board, "Lost"))
    emu.ui_archive_item(item)
    emu.ui_delete_item(emu.ui_create_item(board, "Gone"))
    by_kind: dict[str, dict[str, Any]] = {}
    for body in captured:
        event = body["event"]
        key = event["type"] if event["type"] != "update_column_value" else f"update:{event['columnId']}"
        if key == "create_pulse" and event["pulseName"] == "Gone":
            continue
        by_kind.setdefault(key, body)
    yield by_kind
    emu.close()


def test_create_pulse(deliveries: dict[str, dict[str, Any]]) -> None:
    body = deliveries["create_pulse"]
    event = parse_event(json.dumps(body))
    assert event is not None and event.kind == "create"
    assert event.item_id == str(body["event"]["pulseId"]) and event.board_id == str(body["event"]["boardId"])
    assert event.fields == {"name": "Kim Lee", "status": "New", "numbers": 12, "email": "kim@lee.example"}
    assert event.group_id == "topics" and event.previous == {}
    assert event.trigger_uuid == body["event"]["triggerUuid"]


@pytest.mark.parametrize(
    ("column", "new", "old"),
    [
        ("status", "Qualified", "New"),
        ("date4", "2025-02-05T10:00:00Z", None),
        ("person", [58_000_002], []),
    ],
)
def test_update_column_value(deliveries: dict[str, dict[str, Any]], column: str, new: Any, old: Any) -> None:
    event = parse_event(json.dumps(deliveries[f"update:{column}"]))
    assert event is not None and event.kind == "update"
    assert event.fields == {column: new} and event.previous == {column: old}
    assert isinstance(event.at, dt.datetime)  # from the float changedAt


def test_update_name(deliveries: dict[str, dict[str, Any]]) -> None:
    event = parse_event(json.dumps(deliveries["update_name"]))
    assert event is not None and event.kind == "rename"
    assert event.fields == {"name": "Kim Lee-Park"} and event.previous == {"name": "Kim Lee"}


def test_move_pulse_into_group(deliveries: dict[str, dict[str, Any]]) -> None:
    event = parse_event(json.dumps(deliveries["move_pulse_into_group"]))
    assert event is not None and event.kind == "move"
    assert event.group_id == "group_mkr2lost"
    assert event.fields == {"__group__": "group_mkr2lost"} and event.previous == {"__group__": "topics"}


@pytest.mark.parametrize(("legacy", "kind"), [("archive_pulse", "archive"), ("delete_pulse", "delete")])
def test_archive_and_delete(deliveries: dict[str, dict[str, Any]], legacy: str, kind: str) -> None:
    body = deliveries[legacy]
    event = parse_event(json.dumps(body))
    assert event is not None and event.kind == kind
    assert event.item_id == str(body["event"]["itemId"])


def test_other_events_are_not_synced_and_bad_bodies_are_malformed() -> None:
    assert (
        parse_event({"event": {"type": "create_update", "boardId": 1, "pulseId": 2, "triggerUuid": "x"}})
        is None
    )
    with pytest.raises(MalformedEvent):
        parse_event(b"not json")
    with pytest.raises(MalformedEvent):
        parse_event({"nothing": 1})
    with pytest.raises(MalformedEvent):
        parse_event({"event": {"type": "delete_pulse", "boardId": 1}})


def test_the_challenge_is_echoed() -> None:
    assert challenge_reply(b'{"challenge": "abc123"}') == {"challenge": "abc123"}
    assert challenge_reply(json.dumps(SEED_PAYLOAD)) is None
    with pytest.raises(MalformedEvent):
        challenge_reply(b"garbage")


def token(secret: str = SECRET, **claims: Any) -> str:
    now = int(time.time())
    values = {"accountId": 1, "userId": 2, "aud": URL, "iat": now, "exp": now + 300, "shortLivedToken": "t"}
    values.update(claims)
    return jwt.encode({k: v for k, v in values.items() if v is not None}, secret, algorithm="HS256")


def test_a_valid_signature_passes() -> None:
    assert verify_request({"Authorization": token()}, b"{}", SECRET, audience=URL)["aud"] == URL
    verify_request({"authorization": f"Bearer {token()}"}, b"{}", SECRET, audience=["https://x", URL])


def test_without_a_signing_secret_nothing_passes_the_signed_route() -> None:
    with pytest.raises(WebhookRefused, match="secret"):
        verify_request({"Authorization": token()}, b"{}", None, audience=URL)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "not-a-jwt"},
        {"Authorization": token("another-secret-entirely-different")},
        {"Authorization": token(exp=int(time.time()) - 3600)},
        {"Authorization": token(exp=None)},
        {"Authorization": token(aud="https://elsewhere.example/hook")},
        {"Authorization": token(aud=None)},
        {"Authorization": token(iat=None)},
        {"Authorization": jwt.encode({"exp": int(time.time()) + 60, "aud": URL}, SECRET, algorithm="HS384")},
    ],
    ids=[
        "missing",
        "empty",
        "garbage",
        "wrong-secret",
        "expired",
        "no-exp",
        "wrong-audience",
        "no-audience",
        "no-iat",
        "wrong-algorithm",
    ],
)
def test_a_bad_or_missing_signature_is_refused(headers: dict[str, str]) -> None:
    with pytest.raises(WebhookRefused):
        verify_request(headers, b"{}", SECRET, audience=URL)
    assert not issubclass(WebhookRefused, RuntimeError)
