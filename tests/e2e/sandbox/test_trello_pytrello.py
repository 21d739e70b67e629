"""The unmodified py-trello client against the Trello emulator (its base URL is rewritten in transit)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from trello import TrelloClient
from trello.exceptions import ResourceUnavailable, Unauthorized

from crmsync.sandbox.runner import serve
from crmsync.sandbox.server import BackgroundServer
from crmsync.sandbox.trello import TrelloEmulator


class _ToEmulator(HTTPAdapter):
    """Sends what py-trello addresses to api.trello.com / trello.com to the emulator instead."""

    def __init__(self, base: str) -> None:
        super().__init__()
        self.base = base

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        assert request.url is not None
        for origin in ("https://api.trello.com", "https://trello.com"):
            if request.url.startswith(origin):
                request.url = self.base + request.url[len(origin) :]
        return super().send(request, *args, **kwargs)


@pytest.fixture(scope="module")
def emulator() -> Iterator[TrelloEmulator]:
    emu = TrelloEmulator(retry_delays=(0.05,))
    with serve(emu):
        yield emu


@pytest.fixture
def session(emulator: TrelloEmulator) -> Iterator[requests.Session]:
    emulator.seed("demo")
    with requests.Session() as http:
        adapter = _ToEmulator(emulator.base_url)
        http.mount("https://api.trello.com/", adapter)
        http.mount("https://trello.com/", adapter)
        yield http


@pytest.fixture
def client(emulator: TrelloEmulator, session: requests.Session) -> TrelloClient:
    # the OAuth1 form: py-trello signs every request with an Authorization: OAuth header
    return TrelloClient(emulator.key, api_secret=emulator.secret, token=emulator.token, http_service=session)


def test_lists_boards_and_lists(client: TrelloClient, emulator: TrelloEmulator) -> None:
    boards = client.list_boards()
    assert [b.name for b in boards] == ["Delivery"]
    board = client.get_board(boards[0].id)
    assert board.url.startswith("https://trello.com/b/")
    assert [lst.name for lst in board.open_lists()] == ["Backlog", "In progress", "Won", "Lost", "Done"]
    names = {d.name: d.field_type for d in board.get_custom_field_definitions()}
    assert names["Amount"] == "number" and names["Update status"] == "list"
    cards = board.open_cards()
    assert len(cards) == 4
    acme = next(c for c in cards if c.name.startswith("Acme"))
    fields = {f.name: f.value for f in acme.custom_fields}
    assert fields["Salesforce Task Id"] == "00T5g00000AcmE1"
    assert fields["Amount"] == 12000.0
    assert fields["Update status"] == "OK"


def test_query_string_auth(emulator: TrelloEmulator, session: requests.Session) -> None:
    # without token=, py-trello sends key and api_secret as ?key=&token=
    client = TrelloClient(emulator.key, api_secret=emulator.token, http_service=session)
    assert [b.name for b in client.list_boards()] == ["Delivery"]
    bad = TrelloClient(emulator.key, api_secret="nope", http_service=session)
    with pytest.raises(Unauthorized, match="invalid token"):
        bad.list_boards()


def test_creates_moves_archives_and_deletes_cards(client: TrelloClient, emulator: TrelloEmulator) -> None:
    board_id = emulator.board_id("Delivery")
    board = client.get_board(board_id)
    backlog, progress = board.open_lists()[:2]
    label = next(lab for lab in board.get_labels() if lab.name == "Urgent")
    card = backlog.add_card("New request", desc="from Salesforce", labels=[label], position="top")
    assert card.idList == backlog.id and card.idLabels == [label.id]
    assert card.pos < min(c.pos for c in backlog.list_cards() if c.id != card.id)
    assert int(card.id[:8], 16) > 0 and len(card.short_url.rsplit("/", 1)[1]) == 8

    card.change_list(progress.id)
    card.set_name("Renamed request")
    card.set_due(datetime(2026, 5, 1, 12, 0, tzinfo=UTC))
    card.comment("first comment")
    card.add_member(next(m for m in board.get_members() if m.username == "alice"))
    card.set_closed(True)

    fetched = client.get_card(card.id)
    assert fetched.idList == progress.id and fetched.name == "Renamed request" and fetched.closed
    assert fetched.due == "2026-05-01T12:00:00.000Z"
    assert [c["data"]["text"] for c in fetched.get_comments()] == ["first comment"]
    types = [a["type"] for a in emulator.actions(board_id, limit=8)]
    assert types[:6] == [
        "updateCard",
        "addMemberToCard",
        "commentCard",
        "updateCard",
        "updateCard",
        "updateCard",
    ]

    card.delete()
    with pytest.raises(ResourceUnavailable, match=r"The requested resource was not found\."):
        client.get_card(card.id)
    deleted = emulator.actions(board_id, filter="deleteCard")[0]
    assert deleted["data"]["card"] == {"id": card.id, "idShort": card.idShort}


def test_sets_custom_fields(client: TrelloClient, emulator: TrelloEmulator) -> None:
    board = client.get_board(emulator.board_id("Delivery"))
    card = board.open_lists()[0].add_card("Fields")
    by_name = {d.name: d for d in board.get_custom_field_definitions()}
    card.set_custom_field("00T000000000001", by_name["Salesforce Task Id"])
    card.set_custom_field("1250.5", by_name["Amount"])
    card.set_custom_field("2026-06-30T00:00:00.000Z", by_name["Close date"])
    card.set_custom_field("Overdue", by_name["Update status"])
    items = {i["idCustomField"]: i for i in emulator.card(card.id)["customFieldItems"]}
    assert items[by_name["Salesforce Task Id"].id]["value"] == {"text": "00T000000000001"}
    assert items[by_name["Amount"].id]["value"] == {"number": "1250.5"}
    assert items[by_name["Close date"].id]["value"] == {"date": "2026-06-30T00:00:00.000Z"}
    option = next(k for k, v in by_name["Update status"].list_options.items() if v == "Overdue")
    assert items[by_name["Update status"].id]["idValue"] == option
    assert "value" not in items[by_name["Update status"].id]

    card.set_custom_field("", by_name["Amount"])  # clearing removes the item
    fields = {f.name: f.value for f in client.get_card(card.id).custom_fields}
    assert "Amount" not in fields and fields["Update status"] == "Overdue"


def test_creates_and_deletes_a_webhook(client: TrelloClient, emulator: TrelloEmulator) -> None:
    received: list[bytes] = []
    got = threading.Event()

    async def hook(request: Request) -> Response:
        if request.method == "POST":
            received.append(await request.body())
            got.set()
        return Response("ok")

    receiver = BackgroundServer(Starlette(routes=[Route("/hook", hook, methods=["HEAD", "POST"])]))
    with receiver:
        board_id = emulator.board_id("Delivery")
        webhook = client.create_hook(receiver.url + "/hook", board_id, desc="crmsync")
        assert [h.id for h in client.list_hooks()] == [webhook.id]
        emulator.create_card(emulator.list_id(board_id, "Backlog"), "Hooked", by="alice")
        assert got.wait(5)
        assert b'"type":"createCard"' in received[0]
        webhook.delete()
        assert client.list_hooks() == []
