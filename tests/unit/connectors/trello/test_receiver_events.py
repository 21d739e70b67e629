"""Board actions as the engine's events: each carries what the action itself set and replaced (its
``data.old``, a move's lists, the member or label added or removed), the same whether the webhook
delivered it or the catch-up read it back from the board's actions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from tests.unit.connectors.trello.test_webhooks import BACKLOG, BOARD, CARD, CARD_IN, WON, action

from crmsync.connectors.base import Record
from crmsync.connectors.capabilities import SourceEvent
from crmsync.connectors.trello.history import TrelloHistory
from crmsync.connectors.trello.receiver import TrelloReceiver

NORA = "n" * 24
URGENT = {"id": "l" * 24, "name": "Urgent"}

#: one action of each kind, oldest first, with what its event says it set and replaced:
#: (action, fields, changed, previous, details, previous details)
ACTIONS: list[tuple[dict[str, Any], dict[str, Any], Any, Any, dict[str, Any], dict[str, Any]]] = [
    (action("createCard", CARD_IN, id="a01"),
     {"name": "Deal", "idList": BACKLOG["id"], "list": "Backlog"},
     {"name": "Deal", "idList": BACKLOG["id"], "list": "Backlog"}, {}, {}, {}),
    (action("updateCard", {"card": {**CARD, "idList": WON["id"]}, "old": {"idList": BACKLOG["id"]},
                           "listBefore": BACKLOG, "listAfter": WON}, id="a02"),
     {"idList": WON["id"], "list": "Won"},
     {"idList": WON["id"], "list": "Won"}, {"idList": BACKLOG["id"], "list": "Backlog"}, {}, {}),
    (action("updateCard", {**CARD_IN, "card": {**CARD, "name": "Big deal"}, "old": {"name": "Deal"}},
            id="a03"),
     {"name": "Big deal"}, {"name": "Big deal"}, {"name": "Deal"}, {}, {}),
    (action("updateCard", {**CARD_IN, "card": {**CARD, "closed": True}, "old": {"closed": False}}, id="a04"),
     {"closed": True}, {"closed": True}, {"closed": False}, {}, {}),
    # the card's whole sets are its fields; the action itself set none: it added one member
    (action("addMemberToCard", {**CARD_IN, "idMember": NORA}, member={"id": NORA}, id="a05"),
     {"members": ["nora"], "labels": ["Urgent"], "idMembers": [NORA], "idLabels": [URGENT["id"]]},
     {}, {}, {"member": "nora"}, {}),
    (action("removeMemberFromCard", {**CARD_IN, "idMember": NORA}, id="a06"),
     {"members": ["nora"], "labels": ["Urgent"], "idMembers": [NORA], "idLabels": [URGENT["id"]]},
     {}, {}, {}, {"member": "nora"}),
    (action("addLabelToCard", {**CARD_IN, "label": URGENT}, id="a07"),
     {"members": ["nora"], "labels": ["Urgent"], "idMembers": [NORA], "idLabels": [URGENT["id"]]},
     {}, {}, {"label": "Urgent"}, {}),
    (action("removeLabelFromCard", {**CARD_IN, "label": URGENT}, id="a08"),
     {"members": ["nora"], "labels": ["Urgent"], "idMembers": [NORA], "idLabels": [URGENT["id"]]},
     {}, {}, {}, {"label": "Urgent"}),
    (action("commentCard", {**CARD_IN, "text": "Called them"}, id="a09"),
     {}, {}, {}, {"text": "Called them"}, {}),
    (action("updateComment", {**CARD_IN, "action": {"id": "a09", "text": "Called them twice"},
                              "old": {"text": "Called them"}}, id="a10"),
     {}, {}, {}, {"text": "Called them twice"}, {"text": "Called them"}),
    (action("deleteCard", CARD_IN, id="a11"), {}, {}, {}, {}, {}),
]  # fmt: skip


class Client:
    """The board's actions, answered newest first as Trello does."""

    def __init__(self, actions: Sequence[dict[str, Any]]) -> None:
        self.actions = list(actions)

    def get(self, path: str, **params: Any) -> list[dict[str, Any]]:
        assert path == f"/boards/{BOARD['id']}/actions"
        ids = [a["id"] for a in self.actions]
        after = self.actions[ids.index(params["since"]) + 1 :] if params.get("since") in ids else self.actions
        return list(reversed(after))


class Board(TrelloReceiver, TrelloHistory):
    """The receiver and history halves of a Trello connector, on a fixed board."""

    def __init__(self, actions: Sequence[dict[str, Any]]) -> None:
        self.name = "trello"
        self.client = Client(actions)  # type: ignore[assignment]

    def info(self) -> Any:
        return SimpleNamespace(members={NORA: "nora", "m" * 24: "max"})

    def read_records(self, object_name: str, ids: Sequence[str]) -> list[Record]:
        fields = {"members": ["nora"], "labels": ["Urgent"], "idMembers": [NORA], "idLabels": [URGENT["id"]]}
        return [Record(object_name, ids[0], fields)]

    def object_id(self, name: str) -> str:
        return str(BOARD["id"])


def delivered(board: Board, raw: dict[str, Any]) -> list[SourceEvent]:
    body = {"action": raw, "model": BOARD, "webhook": {"id": "w" * 24, "idModel": BOARD["id"]}}
    return board.parse(json.dumps(body).encode())


def test_each_action_says_what_it_set_and_replaced() -> None:
    board = Board([a for a, *_ in ACTIONS])
    for raw, fields, changed, previous, details, previous_details in ACTIONS:
        [event] = delivered(board, raw)
        meta = event.meta()
        assert dict(event.fields) == fields, raw["type"]
        assert (meta.changed, meta.previous) == (changed, previous), raw["type"]
        assert (meta.details, meta.previous_details) == (details, previous_details), raw["type"]
        assert (meta.who, meta.action, meta.delivery_id) == ("max", raw["type"], raw["id"])


def test_the_catch_up_reads_back_the_same_events_as_the_webhook_delivered() -> None:
    actions = [a for a, *_ in ACTIONS]
    board = Board(actions)
    webhook = [event for raw in actions for event in delivered(board, raw)]
    caught, newest = board.events_since("Card", "a00")
    assert newest == "a11" and len(caught) == len(actions)
    assert caught == webhook
    assert [e.meta() for e in caught] == [e.meta() for e in webhook]
    later, _ = board.events_since("Card", "a05")  # from a cursor: only what came after it
    assert later == webhook[5:]
