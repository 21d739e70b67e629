"""The connector contract, run against the monday.com connector and the monday sandbox."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest

from crmsync.connectors.capabilities import Delivery, Receiver
from crmsync.connectors.contract import ConnectorContract, Harness
from crmsync.connectors.monday import MondayClient, MondayConnector, MondaySettings
from crmsync.connectors.monday.budget import ComplexityPacer
from crmsync.sandbox.faults import FaultRule
from crmsync.sandbox.monday import MondayEmulator
from crmsync.sandbox.runner import serve


class Receiving:
    """A webhook endpoint for the sandbox to call: answers challenges, keeps every delivery."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                data = json.loads(body or b"{}")
                answer = {"challenge": data["challenge"]} if "challenge" in data else {}
                if "challenge" not in data:
                    received.append((dict(self.headers.items()), body))
                reply = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/monday"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, "the sandbox sent no delivery"
            time.sleep(0.01)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Clock:
    """Pacing without waiting: time moves only when the pacer sleeps."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def connector_for(emu: MondayEmulator, name: str = "monday", **kw: Any) -> MondayConnector:
    env = emu.credentials()
    values: dict[str, Any] = {
        "token": env["MONDAY_TOKEN"],
        "api_url": env["MONDAY_API_URL"],
        "signing_secret": env["MONDAY_SIGNING_SECRET"],
        "app_token": env["MONDAY_APP_TOKEN"],
        **kw,
    }
    settings = MondaySettings(**values)
    clock = _Clock()
    pacer = ComplexityPacer(settings.complexity_per_minute, None, clock=clock, sleep=clock.sleep)
    return MondayConnector(
        name, settings=settings, client=MondayClient(settings, pacer=pacer, sleep=clock.sleep)
    )


def _same(held: Any, sent: Any) -> bool:
    try:
        return float(held) == float(sent)
    except (TypeError, ValueError):
        return str(held) == str(sent)


class MondayHarness(Harness):
    key_field = "text"
    change_overlap = dt.timedelta(0)  # whole-second stamps: items stamped at the watermark come again

    def __init__(self, emu: MondayEmulator, receiving: Receiving) -> None:
        self.emu = emu
        self.receiving = receiving
        self.object_name = emu.board_id("Leads")
        self.connector = connector_for(emu)

    def new_fields(self, n: int) -> dict[str, Any]:
        return {"name": f"Lead {n}", "text": self.key(n), "numbers": n}

    def changed_fields(self, n: int) -> dict[str, Any]:
        return {"name": f"Changed {n}", "numbers": n * 10 + 1}

    def refused_fields(self) -> dict[str, Any]:
        return {"name": "Refused", "status": "No such label"}

    def same(self, held: Mapping[str, Any], sent: Mapping[str, Any]) -> bool:
        return all(_same(held.get(k), v) for k, v in sent.items())

    def far_get(self, record_id: str, object_name: str | None = None) -> Mapping[str, Any] | None:
        try:
            item = self.emu.item(record_id)
        except KeyError:
            return None
        return {"name": item["name"], **item["columns"]} if item["state"] == "active" else None

    def far_ids(self, object_name: str | None = None) -> set[str]:
        return {str(i["id"]) for i in self.emu.items(object_name or self.object_name)}

    def far_create(self, fields: Mapping[str, Any]) -> str:
        values = {k: str(v) for k, v in fields.items() if k != "name"}
        return self.emu.ui_create_item(self.object_name, str(fields["name"]), values=values)

    def far_update(self, record_id: str, fields: Mapping[str, Any]) -> None:
        self.emu.ui_change_values(record_id, {k: str(v) for k, v in fields.items()})

    def far_delete(self, record_id: str) -> None:
        self.emu.ui_delete_item(record_id)

    def fail_next_call(self) -> None:
        self.emu.faults.add(FaultRule(path="/v2", error="server_error", count=1))

    def refused_connector(self) -> MondayConnector:
        return connector_for(self.emu, "monday-refused", token="not-a-token")

    def deliveries(self, record_id: str) -> tuple[Receiver, Delivery, list[Delivery]]:
        url = self.receiving.url
        self.emu.add_webhook(self.object_name, url, "change_column_value", app=True)
        before = len(self.receiving.received)
        self.emu.ui_change_column(record_id, "numbers", "5")
        self.receiving.wait_for(before + 1)
        headers, body = self.receiving.received[before]
        good = Delivery(headers, body, url)
        claims = jwt.decode(headers["Authorization"], options={"verify_signature": False})
        secret = self.emu.credentials()["MONDAY_SIGNING_SECRET"]
        forged = [
            Delivery(
                {
                    **headers,
                    "Authorization": jwt.encode(claims, "another-secret-of-32-bytes-or-more!", "HS256"),
                },
                body,
                url,
            ),
            Delivery(
                {
                    **headers,
                    "Authorization": jwt.encode(
                        {**claims, "aud": "https://elsewhere.example/"}, secret, "HS256"
                    ),
                },
                body,
                url,
            ),
            Delivery({k: v for k, v in headers.items() if k != "Authorization"}, body, url),
            Delivery(headers, body, url, path_secret="guessed"),
        ]
        return Receiver(url_secret="the-url-secret", callback_url=url), good, forged

    def webhook_url(self) -> str:
        return self.receiving.url


@pytest.fixture
def emu() -> Iterator[MondayEmulator]:
    emulator = MondayEmulator(retry_delays=(0.05,))
    emulator.seed("demo")
    with serve(emulator):
        yield emulator


@pytest.fixture(scope="module")
def receiving() -> Iterator[Receiving]:
    endpoint = Receiving()
    yield endpoint
    endpoint.close()


class TestMondayContract(ConnectorContract):
    connector_class = MondayConnector
    upserts = True
    replays_creates = True  # an Idempotency-Key derived from the creates a request carries
    polls_deletions = False  # monday's pages list no deleted items: deletions arrive by webhook
    guards_budget = False  # the complexity budget is paced per minute, not an allowance

    @pytest.fixture
    def harness(self, emu: MondayEmulator, receiving: Receiving) -> Iterator[Harness]:
        harness = MondayHarness(emu, receiving)
        yield harness
        harness.connector.close()
