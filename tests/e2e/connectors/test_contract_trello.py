"""The connector contract, run against the Trello connector and the Trello sandbox.

The far side is the emulator's own Python API (a person's edits on the board); webhook deliveries
are the ones the emulator really sends to a local endpoint, as Trello would."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from crmsync.connectors.capabilities import Delivery, Receiver
from crmsync.connectors.contract import ConnectorContract, Harness
from crmsync.connectors.trello import TrelloConnection, TrelloConnector
from crmsync.connectors.trello import cards as codec
from crmsync.connectors.trello.webhooks import signature
from crmsync.sandbox.runner import serve
from crmsync.sandbox.trello import TrelloEmulator
from crmsync.sandbox.trello.http import TrelloError

KEY_FIELD = "Salesforce Task Id"  # a text custom field of the demo board


class Receiving:
    """A callback endpoint: answers Trello's HEAD check and every delivery with 200."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                self.send_response(200)
                self.end_headers()

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/trello"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def connector_for(emu: TrelloEmulator, name: str = "trello", **extra: Any) -> TrelloConnector:
    values: dict[str, Any] = {
        "type": "trello",
        "api_url": emu.base_url + "/1",
        "key": emu.key,
        "token": emu.token,
        "app_secret": emu.secret,
        "board": "Delivery",
        "default_list": "Backlog",
        **extra,
    }
    return TrelloConnector(name, settings=TrelloConnection.model_validate(values))


class TrelloHarness(Harness):
    object_name = "Card"
    key_field = KEY_FIELD
    change_overlap = None  # actions after the watermark's action: nothing is read again

    def __init__(self, emu: TrelloEmulator, receiving: Receiving) -> None:
        self.emu = emu
        self.receiving = receiving
        self.board = emu.board_id("Delivery")
        self.backlog = emu.list_id(self.board, "Backlog")
        self.connector = connector_for(emu)

    def new_fields(self, n: int) -> dict[str, Any]:
        return {"name": f"Card {n}", KEY_FIELD: self.key(n)}

    def changed_fields(self, n: int) -> dict[str, Any]:
        return {"name": f"Changed {n}", "list": "In progress"}

    def refused_fields(self) -> dict[str, Any]:
        return {"name": "Refused", "list": "No such list"}

    def watermark_order(self, watermark: str) -> Any:
        return watermark  # an action id: 24 hex digits, its first 8 the time, so ordered as text

    def far_get(self, record_id: str, object_name: str | None = None) -> Mapping[str, Any] | None:
        try:
            card = self.emu.card(record_id)
        except TrelloError:  # not found: deleted
            return None
        if card.get("closed") or card.get("idBoard") != self.board:
            return None
        return codec.card_record(card, self.connector.info(refresh=True)).fields

    def far_ids(self, object_name: str | None = None) -> set[str]:
        return {str(c["id"]) for c in self.emu.cards(self.board) if not c.get("closed")}

    def far_create(self, fields: Mapping[str, Any]) -> str:
        card = self.emu.create_card(self.backlog, str(fields["name"]))
        for name, value in fields.items():
            if name != "name":
                self.emu.set_custom_field(str(card["id"]), name, value)
        return str(card["id"])

    def far_update(self, record_id: str, fields: Mapping[str, Any]) -> None:
        plain = {k: v for k, v in fields.items() if k == "name"}
        if "list" in fields:
            plain["idList"] = self.emu.list_id(self.board, str(fields["list"]))
        self.emu.update_card(record_id, **plain)

    def far_delete(self, record_id: str) -> None:
        self.emu.delete_card(record_id)

    def fail_next_call(self) -> None:
        self.emu.faults.add(error="server_error", count=1)

    def refused_connector(self) -> TrelloConnector:
        return connector_for(self.emu, "trello-refused", token="0" * 64)

    def deliveries(self, record_id: str) -> tuple[Receiver, Delivery, list[Delivery]]:
        url = self.receiving.url
        self.connector.ensure_subscriptions(self.object_name, url, attempt="contract")
        self.emu.dispatcher.wait_idle(10)
        before = len(self.emu.dispatcher.sent)
        self.emu.update_card(record_id, name="Renamed on the board")
        assert self.emu.dispatcher.wait_idle(10), "the sandbox did not deliver"
        sent = [d for d, _ in self.emu.dispatcher.sent[before:]]
        [delivery] = [d for d in sent if _card_of(d.body) == record_id]
        good = Delivery(dict(delivery.headers), delivery.body, url)
        tampered = delivery.body.replace(b"Renamed on the board", b"Renamed by a forger")
        headers = {k: v for k, v in good.headers.items() if k.lower() != "x-trello-webhook"}

        def signed(secret: str, callback: str) -> Delivery:
            return Delivery(
                {**headers, "X-Trello-Webhook": signature(secret, good.body, callback)}, good.body, url
            )

        forged = [
            Delivery(good.headers, tampered, url),  # the body changed after signing
            signed("another-secret", url),  # not the app's secret
            signed(self.emu.secret, url + "/elsewhere"),  # signed for another callback URL
            Delivery(headers, good.body, url),  # no signature
        ]
        return Receiver(url_secret="unused", callback_url=url), good, forged

    def webhook_url(self) -> str:
        return self.receiving.url


def _card_of(body: bytes) -> str | None:
    data = json.loads(body)
    card = ((data.get("action") or {}).get("data") or {}).get("card") or {}
    return card.get("id")


@pytest.fixture
def emu() -> Iterator[TrelloEmulator]:
    emulator = TrelloEmulator(retry_delays=(0.05,))
    emulator.seed("demo")
    with serve(emulator):
        yield emulator


@pytest.fixture(scope="module")
def receiving() -> Iterator[Receiving]:
    endpoint = Receiving()
    yield endpoint
    endpoint.close()


class TestTrelloContract(ConnectorContract):
    connector_class = TrelloConnector
    upserts = True  # by a custom field's value
    replays_creates = True  # a marker in the description, looked up when a create may have landed
    polls_deletions = True  # deleteCard actions come back as deleted records
    guards_budget = False  # the budget is a paced 10-second window, not an allowance

    @pytest.fixture
    def harness(self, emu: TrelloEmulator, receiving: Receiving) -> Iterator[Harness]:
        harness = TrelloHarness(emu, receiving)
        yield harness
        harness.connector.close()
