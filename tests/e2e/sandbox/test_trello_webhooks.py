"""Trello webhooks against a real local receiver: HEAD check, signatures, payload shapes,
retries, failure counters, deactivation, 410 deletion and token scope."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crmsync.sandbox.runner import serve
from crmsync.sandbox.server import BackgroundServer
from crmsync.sandbox.trello import TrelloEmulator


@dataclass
class Receiver:
    """A callback endpoint: HEAD answers ``head_status``; POSTs answer the next of ``replies`` (else 200)."""

    head_status: int = 200
    replies: list[int] = field(default_factory=list)
    posts: list[tuple[bytes, dict[str, str], int]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    server: BackgroundServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url + "/trello"

    async def endpoint(self, request: Request) -> Response:
        if request.method == "HEAD":
            return Response(status_code=self.head_status)
        body = await request.body()
        with self.cond:
            status = self.replies.pop(0) if self.replies else 200
            self.posts.append((body, dict(request.headers), status))
            self.cond.notify_all()
        return Response(status_code=status)

    def wait_for(self, check: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not check():
                left = deadline - time.monotonic()
                assert left > 0, "condition not reached"
                self.cond.wait(left)

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(body) for body, _, _ in self.posts]


@pytest.fixture(scope="module")
def emulator() -> Iterator[TrelloEmulator]:
    emu = TrelloEmulator(retry_delays=(0.05, 0.1, 0.15), token_limit=10_000, key_limit=10_000)
    with serve(emu):
        yield emu


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    rec.server = BackgroundServer(
        Starlette(routes=[Route("/trello", rec.endpoint, methods=["HEAD", "POST"])])
    )
    with rec.server:
        yield rec


@pytest.fixture
def api(emulator: TrelloEmulator) -> Iterator[httpx.Client]:
    emulator.seed("demo")
    emulator.webhooks.deactivate_after_failures = None
    auth = {"key": emulator.key, "token": emulator.token}
    with httpx.Client(base_url=emulator.base_url + "/1", params=auth) as client:
        yield client
    emulator.dispatcher.wait_idle()


def register(api: httpx.Client, receiver: Receiver, model: str) -> dict[str, Any]:
    reply = api.post("/webhooks", json={"callbackURL": receiver.url, "idModel": model, "description": "test"})
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def test_creation_runs_the_head_check(
    api: httpx.Client, emulator: TrelloEmulator, receiver: Receiver
) -> None:
    board = emulator.board_id("Delivery")
    receiver.head_status = 405
    refused = api.post("/webhooks", json={"callbackURL": receiver.url, "idModel": board})
    assert (refused.status_code, refused.text) == (
        400,
        f"URL ({receiver.url}) did not return 200 status code, got 405",
    )
    assert refused.headers["content-type"] == "text/plain; charset=utf-8"
    receiver.head_status = 200
    hook = register(api, receiver, board)
    assert hook == {
        "id": hook["id"],
        "description": "test",
        "idModel": board,
        "callbackURL": receiver.url,
        "active": True,
        "consecutiveFailures": 0,
        "firstConsecutiveFailDate": None,
    }
    again = api.post("/webhooks", json={"callbackURL": receiver.url, "idModel": board})
    assert (again.status_code, again.text) == (
        400,
        "A webhook with that callback, model, and token already exists",
    )


def test_webhooks_belong_to_the_token(
    api: httpx.Client, emulator: TrelloEmulator, receiver: Receiver
) -> None:
    hook = register(api, receiver, emulator.board_id("Delivery"))
    assert [h["id"] for h in api.get(f"/tokens/{emulator.token}/webhooks").json()] == [hook["id"]]
    other = emulator.add_token()
    mine = api.get(f"/webhooks/{hook['id']}", params={"token": other})
    assert (mine.status_code, mine.text) == (401, "webhook does not belong to token")
    assert api.get(f"/tokens/{other}/webhooks", params={"token": other}).json() == []
    assert api.get("/webhooks/xyz").text == "invalid value for idWebhook"
    assert api.delete(f"/webhooks/{hook['id']}").status_code == 200
    gone = api.delete(f"/webhooks/{hook['id']}")
    assert (gone.status_code, gone.text) == (404, "The requested resource was not found.")
    register(api, receiver, emulator.board_id("Delivery"))
    emulator.revoke_token(emulator.token)  # revoking the token deletes its webhooks
    assert emulator.webhook_list() == []


def test_delivery_is_signed_and_shaped(
    api: httpx.Client, emulator: TrelloEmulator, receiver: Receiver
) -> None:
    board = emulator.board_id("Delivery")
    hook = register(api, receiver, board)
    card = emulator.create_card(emulator.list_id(board, "Backlog"), "Signed", by="alice")
    assert emulator.dispatcher.wait_idle()
    body, headers, _ = receiver.posts[0]
    expected = base64.b64encode(
        hmac.new(emulator.secret.encode(), body + receiver.url.encode(), hashlib.sha1).digest()
    ).decode()
    assert hmac.compare_digest(headers["x-trello-webhook"], expected)
    payload = json.loads(body)
    assert set(payload) == {"action", "model", "webhook"}
    assert payload["model"]["id"] == board and payload["model"]["name"] == "Delivery"
    assert payload["webhook"]["id"] == hook["id"]
    action = payload["action"]
    assert action["type"] == "createCard" and action["display"]["translationKey"] == "action_create_card"
    assert action["data"]["card"] == {k: card[k] for k in ("id", "name", "idShort", "shortLink")}
    assert action["data"]["list"]["name"] == "Backlog" and action["data"]["board"]["id"] == board
    assert action["memberCreator"]["username"] == "alice"


def test_payloads_of_each_card_change(
    api: httpx.Client, emulator: TrelloEmulator, receiver: Receiver
) -> None:
    board = emulator.board_id("Delivery")
    card = emulator.cards(board)[0]
    register(api, receiver, card["id"])  # a card webhook: model is the card
    won = emulator.list_id(board, "Won")
    cid = card["id"]
    emulator.move_card(cid, won)
    emulator.update_card(cid, name="Renamed")
    emulator.update_card(cid, due="2026-04-01T10:00:00Z")
    emulator.set_custom_field(cid, "Stage", "Closed Won")
    emulator.set_custom_field(cid, "Update status", "Due")
    emulator.add_member_to_card(cid, "bob")
    emulator.remove_member_from_card(cid, "bob")
    urgent = emulator.label_id(board, "Urgent")
    emulator.add_label_to_card(cid, urgent)
    emulator.remove_label_from_card(cid, urgent)
    emulator.comment(cid, "won it")
    emulator.update_card(cid, closed=True)
    emulator.delete_card(cid)
    assert emulator.dispatcher.wait_idle()
    payloads = receiver.payloads()
    assert all(p["model"]["id"] == cid for p in payloads)
    actions = [p["action"] for p in payloads]
    types = [a["type"] for a in actions]
    assert types == [
        "updateCard",
        "updateCard",
        "updateCard",
        "updateCustomFieldItem",
        "updateCustomFieldItem",
        "addMemberToCard",
        "removeMemberFromCard",
        "addLabelToCard",
        "removeLabelFromCard",
        "commentCard",
        "updateCard",
        "deleteCard",
    ]
    move, rename, due, stage, status, add, remove, label, unlabel, comment, archive, delete = actions
    assert move["data"]["listBefore"]["name"] == "Backlog" and move["data"]["listAfter"]["name"] == "Won"
    assert move["data"]["old"] == {"idList": card["idList"]} and move["data"]["card"]["idList"] == won
    assert move["display"]["translationKey"] == "action_move_card_from_list_to_list"
    assert rename["data"]["old"] == {"name": card["name"]} and rename["data"]["card"]["name"] == "Renamed"
    assert due["data"]["old"] == {"due": None} and due["data"]["card"]["due"] == "2026-04-01T10:00:00.000Z"
    assert stage["data"]["customField"]["name"] == "Stage"
    assert stage["data"]["old"] == {"value": {"text": "Prospecting"}}
    assert stage["data"]["customFieldItem"]["value"] == {"text": "Closed Won"}
    assert set(status["data"]["old"]) == {"idValue"} and status["data"]["customFieldItem"]["idValue"]
    assert add["data"]["idMember"] == emulator.member_id("bob") and add["member"]["username"] == "bob"
    assert remove["data"]["idMember"] == emulator.member_id("bob")
    assert label["data"]["label"]["name"] == "Urgent" and unlabel["data"]["label"]["id"] == urgent
    assert comment["data"]["text"] == "won it"
    assert archive["data"]["old"] == {"closed": False}
    assert archive["display"]["translationKey"] == "action_archived_card"
    assert delete["data"]["card"] == {"id": cid, "idShort": card["idShort"]}
    assert "name" not in delete["data"]["card"]


def test_retries_count_failures_and_reset(
    api: httpx.Client, emulator: TrelloEmulator, receiver: Receiver
) -> None:
    board = emulator.board_id("Delivery")
    hook = register(api, receiver, board)
    receiver.replies = [500, 500]
    emulator.create_card(emulator.list_id(board, "Backlog"), "Retried")
    receiver.wait_for(lambda: len(receiver.posts) >= 2)
    during = api.get(f"/webhooks/{hook['id']}").json()
    assert during["consecutiveFailures"] >= 1 and during["firstConsecutiveFailDate"] is not None
    assert emulator.dispatcher.wait_idle()
    assert [status for _, _, status in receiver.posts] == [500, 500, 200]
    assert len({body for body, _, _ in receiver.posts}) == 1  # the same delivery, retried
    after = api.get(f"/webhooks/{hook['id']}").json()
    assert (after["consecutiveFailures"], after["firstConsecutiveFailDate"], after["active"]) == (
        0,
        None,
        True,
    )


def test_keeps_failing_then_deactivated(
    api: httpx.Client, emulator: TrelloEmulator, receiver: Receiver
) -> None:
    board = emulator.board_id("Delivery")
    emulator.webhooks.deactivate_after_failures = 4
    hook = register(api, receiver, board)
    receiver.replies = [503] * 10
    emulator.create_card(emulator.list_id(board, "Backlog"), "Failing")
    assert emulator.dispatcher.wait_idle()
    assert len(receiver.posts) == 4  # the first attempt and 3 retries
    state = api.get(f"/webhooks/{hook['id']}").json()
    assert (state["active"], state["consecutiveFailures"]) == (False, 4)
    emulator.create_card(emulator.list_id(board, "Backlog"), "Not delivered")
    assert emulator.dispatcher.wait_idle()
    assert len(receiver.posts) == 4  # an inactive webhook gets nothing
    healed = api.put(f"/webhooks/{hook['id']}", json={"active": True}).json()
    assert (healed["active"], healed["consecutiveFailures"]) == (True, 0)


def test_gone_deletes_the_webhook(api: httpx.Client, emulator: TrelloEmulator, receiver: Receiver) -> None:
    board = emulator.board_id("Delivery")
    hook = register(api, receiver, board)
    receiver.replies = [410]
    emulator.create_card(emulator.list_id(board, "Backlog"), "Gone")
    assert emulator.dispatcher.wait_idle()
    assert len(receiver.posts) == 1  # no retry after 410
    assert api.get(f"/webhooks/{hook['id']}").status_code == 404


def test_duplicate_fault_delivers_twice(
    api: httpx.Client, emulator: TrelloEmulator, receiver: Receiver
) -> None:
    board = emulator.board_id("Delivery")
    register(api, receiver, board)
    emulator.faults.add(webhook="duplicate", count=1)
    emulator.create_card(emulator.list_id(board, "Backlog"), "Twice")
    assert emulator.dispatcher.wait_idle()
    ids = [p["action"]["id"] for p in receiver.payloads()]
    assert len(ids) == 2 and ids[0] == ids[1]
