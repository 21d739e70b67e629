"""Monday.com limits: the complexity budget, idempotency keys, the minute limit and throughput."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from crmsync.sandbox.faults import FaultRule
from crmsync.sandbox.monday import MondayEmulator
from crmsync.sandbox.runner import serve


class FakeClock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def served(clock: FakeClock) -> Iterator[tuple[MondayEmulator, str]]:
    em = MondayEmulator(clock=clock, complexity_per_minute=100_000)
    with serve(em) as server:
        yield em, server.url + "/v2"


@pytest.fixture
def em(served: tuple[MondayEmulator, str]) -> MondayEmulator:
    served[0].seed("demo")
    return served[0]


@pytest.fixture
def post(served: tuple[MondayEmulator, str]) -> Iterator[Any]:
    emulator, url = served
    with httpx.Client() as http:

        def send(query: str, headers: dict[str, str] | None = None, **variables: Any) -> httpx.Response:
            sent = {"Authorization": emulator.token, "API-Version": "2026-10", **(headers or {})}
            return http.post(url, json={"query": query, "variables": variables}, headers=sent)

        yield send


CREATE = 'mutation ($b: ID!) { create_item(board_id: $b, item_name: "x") { id } }'
COMPLEXITY = "{ complexity { before after query reset_in_x_seconds } }"


def test_budget_runs_out_and_recovers(post: Any, em: MondayEmulator, clock: FakeClock) -> None:
    leads = em.board_id("Leads")
    first = post(COMPLEXITY).json()["data"]["complexity"]
    assert first == {
        "before": 100_000,
        "after": 100_000 - first["query"],
        "query": first["query"],
        "reset_in_x_seconds": 60,
    }
    for _ in range(9):  # a create_item costs 10,000 points and a bit
        assert post(CREATE, b=leads).status_code == 200
    clock.now += 20
    refused = post(CREATE, b=leads)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "40"
    body = refused.json()
    assert len(body.pop("extensions")["request_id"]) == 36
    assert body == {
        "errors": [
            {
                "message": "Complexity budget exhausted",
                "extensions": {"code": "COMPLEXITY_BUDGET_EXHAUSTED", "retry_in_seconds": 40},
            }
        ],
        "account_id": 31415926,
    }
    assert len(em.items(leads)) == 5 + 9
    clock.now += 40
    after = post(COMPLEXITY).json()["data"]["complexity"]
    assert after["before"] == 100_000 and after["reset_in_x_seconds"] == 60
    assert post(CREATE, b=leads).json()["data"]["create_item"]["id"]


def _exhaust(post: Any, em: MondayEmulator, version: str) -> httpx.Response:
    query = "{ boards(limit: 40) { items_page(limit: 100) { items { id name } } } }"  # ~ 12,000 points
    for _ in range(20):
        response = post(query, headers={"API-Version": version})
        if response.status_code == 429:
            return response
    raise AssertionError("the budget never ran out")


def test_budget_error_shape_for_2025_01(post: Any, em: MondayEmulator, clock: FakeClock) -> None:
    clock.now += 120
    response = _exhaust(post, em, "2025-01")
    extensions = response.json()["errors"][0]["extensions"]
    assert set(extensions) == {
        "code",
        "retry_in_seconds",
        "complexity",
        "complexity_budget_left",
        "complexity_budget_limit",
        "status_code",
    }
    assert extensions["code"] == "COMPLEXITY_BUDGET_EXHAUSTED" and extensions["status_code"] == 429
    assert extensions["complexity_budget_limit"] == 100_000
    assert extensions["complexity"] > extensions["complexity_budget_left"]


def test_budget_error_shape_legacy(post: Any, em: MondayEmulator, clock: FakeClock) -> None:
    clock.now += 120
    response = _exhaust(post, em, "2024-10")
    body = response.json()
    assert body["error_code"] == "ComplexityException" and body["status_code"] == 429
    assert body["errors"] == [body["error_message"]]
    assert body["error_message"].startswith("Complexity budget exhausted, query cost ")
    assert body["error_message"].endswith(" out of 100000 reset in 60 seconds")


def test_app_tokens_have_separate_read_and_write_budgets(
    post: Any, em: MondayEmulator, clock: FakeClock
) -> None:
    clock.now += 120
    app = {"Authorization": em.app_token}
    leads = em.board_id("Leads")
    for _ in range(4):
        assert post(CREATE, headers=app, b=leads).status_code == 200
    assert post(CREATE, headers=app, b=leads).status_code == 429  # 50,000 for writes
    read = post(COMPLEXITY, headers=app).json()["data"]["complexity"]
    assert read["before"] == 50_000  # reads are untouched
    assert post(COMPLEXITY).json()["data"]["complexity"]["before"] == 100_000  # the personal token too


def test_idempotency_key_replays_the_reply(post: Any, em: MondayEmulator, clock: FakeClock) -> None:
    clock.now += 120
    leads = em.board_id("Leads")
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = post(CREATE, headers=key, b=leads)
    again = post(CREATE, headers=key, b=leads)
    assert first.status_code == again.status_code == 200
    assert "Idempotency-Replayed" not in first.headers
    assert again.headers["Idempotency-Replayed"] == "true"
    assert again.json() == first.json()
    assert len(em.items(leads)) == 6
    other = post(CREATE, headers={"Idempotency-Key": str(uuid.uuid4())}, b=leads)
    assert other.json()["data"]["create_item"]["id"] != first.json()["data"]["create_item"]["id"]
    clock.now += 30 * 60
    expired = post(CREATE, headers=key, b=leads)
    assert "Idempotency-Replayed" not in expired.headers and len(em.items(leads)) == 8


def test_failed_call_is_not_cached(post: Any, em: MondayEmulator, clock: FakeClock) -> None:
    clock.now += 120
    leads = em.board_id("Leads")
    key = {"Idempotency-Key": str(uuid.uuid4())}
    em.faults.add(FaultRule(path="^/v2$", error="server_error", count=1))
    assert post(CREATE, headers=key, b=leads).status_code == 500
    retried = post(CREATE, headers=key, b=leads)
    assert retried.status_code == 200 and "Idempotency-Replayed" not in retried.headers
    assert len(em.items(leads)) == 6


def test_in_flight_duplicate_gets_409(
    served: tuple[MondayEmulator, str], post: Any, em: MondayEmulator
) -> None:
    _, url = served
    leads = em.board_id("Leads")
    key = str(uuid.uuid4())
    payload = json.dumps({"query": CREATE, "variables": {"b": leads}}).encode()
    where = urlsplit(url)
    head = (
        f"POST /v2 HTTP/1.1\r\nHost: {where.netloc}\r\nAuthorization: {em.token}\r\n"
        f"Idempotency-Key: {key}\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode()
    with socket.create_connection((where.hostname, where.port), timeout=10) as slow:
        slow.sendall(head + payload[:10])  # the first call has arrived but its body is still coming
        deadline = time.monotonic() + 5
        while em.idempotency.in_flight() == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        conflict = post(CREATE, headers={"Idempotency-Key": key}, b=leads)
        assert conflict.status_code == 409
        assert conflict.headers["Retry-After"] == "1"
        body = conflict.json()
        assert body["errors"] == [
            {
                "message": "A request with this Idempotency-Key is still in progress",
                "extensions": {"code": "IDEMPOTENCY_CONFLICT", "status_code": 409},
            }
        ]
        slow.sendall(payload[10:])
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += slow.recv(65536)
        assert reply.startswith(b"HTTP/1.1 200")
    replayed = post(CREATE, headers={"Idempotency-Key": key}, b=leads)
    assert replayed.headers["Idempotency-Replayed"] == "true"
    assert len(em.items(leads)) == 6


def test_requests_per_minute_limit(clock: FakeClock) -> None:
    em = MondayEmulator(clock=clock, requests_per_minute=3)
    with serve(em) as server, httpx.Client() as http:
        headers = {"Authorization": em.token}
        statuses = [
            http.post(server.url + "/v2", json={"query": "{ me { id } }"}, headers=headers) for _ in range(4)
        ]
        assert [r.status_code for r in statuses] == [200, 200, 200, 429]
        assert statuses[-1].json()["errors"][0]["extensions"] == {
            "code": "RATE_LIMIT_EXCEEDED",
            "retry_in_seconds": 60,
        }
        clock.now += 60
        assert (
            http.post(server.url + "/v2", json={"query": "{ me { id } }"}, headers=headers).status_code == 200
        )
