"""Trello deliveries: the signature (checked against independently computed HMACs), repeats,
and every action type the fact sheet lists parsed into a change."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest

from crmsync.connectors.trello.cards import BoardInfo
from crmsync.connectors.trello.webhooks import (
    MalformedEvent,
    RecentActions,
    WebhookRefused,
    parse_action,
    parse_delivery,
    verify_signature,
)

SECRET = "f" * 64
URL = "https://crm.example.com/webhooks/board"
BOARD = {"id": "b" * 24, "name": "Delivery", "shortLink": "abcdEFGH"}
CARD = {"id": "c" * 24, "name": "Deal", "idShort": 5, "shortLink": "zzzzYYYY"}
BACKLOG = {"id": "1" * 24, "name": "Backlog"}
WON = {"id": "2" * 24, "name": "Won"}


def independent_signature(secret: str, body: bytes, url: str) -> str:
    mac = hmac.HMAC(secret.encode("utf-8"), digestmod="sha1")
    mac.update(body)
    mac.update(url.encode("utf-8"))
    return base64.standard_b64encode(mac.digest()).decode("ascii")


def test_a_delivery_signed_over_body_and_callback_url_is_accepted() -> None:
    body = json.dumps({"action": {"id": "a1", "type": "createCard", "data": {"text": "é ✓"}}}).encode()
    verify_signature(SECRET, body, URL, independent_signature(SECRET, body, URL))


@pytest.mark.parametrize(
    "tamper",
    [
        lambda body, sig: (body + b" ", sig),  # the body changed
        lambda body, sig: (
            body,
            independent_signature(SECRET, body, URL + "/"),
        ),  # another URL
        lambda body, sig: (body, independent_signature("e" * 64, body, URL)),  # another secret
        lambda body, sig: (body, base64.b64encode(hashlib.sha256(body).digest()).decode()),  # no key
        lambda body, sig: (body, ""),
    ],
)
def test_anything_else_is_refused(tamper: Any) -> None:
    body = b'{"action":{"id":"a1"}}'
    body, sig = tamper(body, independent_signature(SECRET, body, URL))
    with pytest.raises(WebhookRefused):
        verify_signature(SECRET, body, URL, sig)


def test_without_a_secret_nothing_is_accepted() -> None:
    body = b"{}"
    with pytest.raises(WebhookRefused, match="app_secret"):
        verify_signature(None, body, URL, independent_signature("", body, URL))


def test_a_repeated_action_is_seen_once() -> None:
    seen = RecentActions(size=2)
    assert [seen.first_time(a) for a in ("a", "a", "b", "c", "a")] == [True, False, True, True, True]


def action(type_: str, data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": "a" * 24,
        "idMemberCreator": "m" * 24,
        "type": type_,
        "date": "2026-03-01T10:00:00.000Z",
        "data": {"board": BOARD, **data},
        **extra,
    }


CARD_IN = {"card": CARD, "list": BACKLOG}
PARSED: list[tuple[dict[str, Any], str, dict[str, Any], dict[str, Any]]] = [
    (
        action("createCard", CARD_IN),
        "create",
        {"name": "Deal", "idList": BACKLOG["id"], "list": "Backlog"},
        {},
    ),
    (
        action("copyCard", {**CARD_IN, "cardSource": {"id": "d" * 24}}),
        "create",
        {"name": "Deal", "idList": BACKLOG["id"], "list": "Backlog"},
        {},
    ),
    (
        action("moveCardToBoard", {**CARD_IN, "boardSource": {"id": "e" * 24}}),
        "create",
        {"name": "Deal", "idList": BACKLOG["id"], "list": "Backlog"},
        {},
    ),
    (
        action(
            "updateCard",
            {
                "card": {**CARD, "idList": WON["id"]},
                "old": {"idList": BACKLOG["id"]},
                "listBefore": BACKLOG,
                "listAfter": WON,
            },
        ),
        "move",
        {"idList": WON["id"], "list": "Won"},
        {"idList": BACKLOG["id"], "list": "Backlog"},
    ),
    (
        action("updateCard", {**CARD_IN, "card": {**CARD, "name": "Big deal"}, "old": {"name": "Deal"}}),
        "rename",
        {"name": "Big deal"},
        {"name": "Deal"},
    ),
    (
        action(
            "updateCard",
            {**CARD_IN, "card": {**CARD, "due": "2026-04-01T00:00:00.000Z"}, "old": {"due": None}},
        ),
        "due",
        {"due": "2026-04-01T00:00:00.000Z"},
        {"due": None},
    ),
    (
        action(
            "updateCard", {**CARD_IN, "card": {**CARD, "dueComplete": True}, "old": {"dueComplete": False}}
        ),
        "due",
        {"dueComplete": True},
        {"dueComplete": False},
    ),
    (
        action("updateCard", {**CARD_IN, "card": {**CARD, "closed": True}, "old": {"closed": False}}),
        "archive",
        {"closed": True},
        {"closed": False},
    ),
    (
        action("updateCard", {**CARD_IN, "card": {**CARD, "closed": False}, "old": {"closed": True}}),
        "unarchive",
        {"closed": False},
        {"closed": True},
    ),
    (
        action(
            "updateCard", {**CARD_IN, "card": {**CARD, "desc": "new\n\ncrmsync:t:k1"}, "old": {"desc": "old"}}
        ),
        "update",
        {"desc": "new"},
        {"desc": "old"},
    ),
    (
        action("updateCard", {**CARD_IN, "card": {**CARD, "pos": 1.5}, "old": {"pos": 3.0}}),
        "update",
        {"pos": 1.5},
        {"pos": 3.0},
    ),
    (
        action(
            "updateCustomFieldItem",
            {
                "card": CARD,
                "customField": {"id": "f" * 24, "name": "Amount", "type": "number"},
                "customFieldItem": {"id": "i" * 24, "value": {"number": "42"}, "idCustomField": "f" * 24},
                "old": {"value": {"number": "7.5"}},
            },
        ),
        "custom_field",
        {"Amount": 42},
        {"Amount": 7.5},
    ),
    (
        action(
            "updateCustomFieldItem",
            {
                "card": CARD,
                "customField": {"id": "f" * 24, "name": "Won?", "type": "checkbox"},
                "customFieldItem": {"id": "i" * 24, "value": {"checked": "true"}, "idCustomField": "f" * 24},
                "old": {"value": None},
            },
        ),
        "custom_field",
        {"Won?": True},
        {"Won?": None},
    ),
    (
        action(
            "updateCustomFieldItem",
            {
                "card": CARD,
                "customField": {"id": "f" * 24, "name": "Status", "type": "list"},
                "customFieldItem": {"id": "i" * 24, "idValue": "o" * 24, "idCustomField": "f" * 24},
                "old": {"idValue": None},
            },
        ),
        "custom_field",
        {"Status": "o" * 24},
        {"Status": None},
    ),
    (
        action(
            "updateCustomFieldItem",
            {
                "card": CARD,
                "customField": {"id": "f" * 24, "name": "Stage", "type": "text"},
                "customFieldItem": {"id": "i" * 24, "value": None, "idCustomField": "f" * 24},
                "old": {"value": {"text": "Won"}},
            },
        ),
        "custom_field",
        {"Stage": None},
        {"Stage": "Won"},
    ),
    (
        action("addMemberToCard", {**CARD_IN, "idMember": "n" * 24}, member={"id": "n" * 24}),
        "members",
        {"member": "n" * 24},
        {},
    ),
    (action("removeMemberFromCard", {**CARD_IN, "idMember": "n" * 24}), "members", {}, {"member": "n" * 24}),
    (
        action("addLabelToCard", {**CARD_IN, "label": {"id": "l" * 24, "name": "Urgent"}}),
        "labels",
        {"label": "Urgent"},
        {},
    ),
    (
        action("removeLabelFromCard", {**CARD_IN, "label": {"id": "l" * 24, "name": "Urgent"}}),
        "labels",
        {},
        {"label": "Urgent"},
    ),
    (action("commentCard", {**CARD_IN, "text": "Call Monday"}), "comment", {"text": "Call Monday"}, {}),
    (
        action(
            "updateComment",
            {**CARD_IN, "action": {"id": "x" * 24, "text": "Call Tuesday"}, "old": {"text": "Call Monday"}},
        ),
        "comment",
        {"text": "Call Tuesday"},
        {"text": "Call Monday"},
    ),
    (action("deleteComment", {**CARD_IN, "action": {"id": "x" * 24}}), "comment", {}, {}),
    (action("deleteCard", {"card": {"id": CARD["id"], "idShort": 5}, "list": BACKLOG}), "delete", {}, {}),
    (action("moveCardFromBoard", {**CARD_IN, "boardTarget": {"id": "e" * 24}}), "delete", {}, {}),
    (action("createList", {"list": WON}), "list", {"name": "Won"}, {}),
    (
        action("updateList", {"list": {**WON, "closed": True}, "old": {"closed": False}}),
        "list",
        {"closed": True},
        {"closed": False},
    ),
    (action("moveListToBoard", {"list": WON, "boardSource": {"id": "e" * 24}}), "list", {"name": "Won"}, {}),
    (
        action("addAttachmentToCard", {**CARD_IN, "attachment": {"id": "t" * 24, "name": "quote.pdf"}}),
        "attachment",
        {"attachment": "quote.pdf"},
        {},
    ),
    (
        action(
            "updateCheckItemStateOnCard",
            {**CARD_IN, "checkItem": {"id": "k" * 24, "name": "Send quote", "state": "complete"}},
        ),
        "checklist",
        {"checkItem": "Send quote", "state": "complete"},
        {},
    ),
]


@pytest.mark.parametrize(
    ("raw", "kind", "fields", "previous"), PARSED, ids=lambda v: v if isinstance(v, str) else ""
)
def test_each_action_type(
    raw: dict[str, Any], kind: str, fields: dict[str, Any], previous: dict[str, Any]
) -> None:
    change = parse_action(raw)
    assert change is not None
    assert (change.kind, change.fields, change.previous) == (kind, fields, previous)
    assert change.action_id == raw["id"] and change.action_type == raw["type"]
    assert change.member_id == "m" * 24 and change.at is not None and change.at.year == 2026
    if kind not in ("list",):
        assert change.card_id == CARD["id"]
    assert change.board_id in (BOARD["id"], "e" * 24)


def test_comment_changes_name_the_comment() -> None:
    created = parse_action(PARSED[19][0])
    edited = parse_action(PARSED[20][0])
    assert created is not None and created.comment_id == "a" * 24
    assert edited is not None and edited.comment_id == "x" * 24


def test_a_list_option_is_named_by_the_board() -> None:
    change = parse_action(PARSED[13][0])
    assert change is not None
    info = BoardInfo(
        id=BOARD["id"],
        custom_fields={
            "f" * 24: {
                "id": "f" * 24,
                "type": "list",
                "options": [{"id": "o" * 24, "value": {"text": "Due"}}],
            }
        },
    )
    assert change.resolved(info).fields == {"Status": "Due"}


def test_actions_that_are_not_changes_are_skipped() -> None:
    assert parse_action(action("updateBoard", {"old": {"name": "x"}})) is None
    assert parse_action(action("createBoard", {})) is None


def test_a_delivery_body_is_read_or_refused() -> None:
    body = json.dumps({"action": PARSED[0][0], "model": BOARD, "webhook": {"id": "w"}}).encode()
    change = parse_delivery(body)
    assert change is not None and change.kind == "create"
    for bad in (b"not json", b"[]", b'{"model": {}}', b'{"action": {"type": "createCard"}}'):
        with pytest.raises(MalformedEvent):
            parse_delivery(bad)
