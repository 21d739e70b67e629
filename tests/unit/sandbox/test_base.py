"""The shared emulator machinery: fault rules, call log, control API, background server."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from crmsync.sandbox.base import Emulator
from crmsync.sandbox.faults import FaultRule, FaultSet
from crmsync.sandbox.runner import serve


def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"condition not met within {timeout} s"
        time.sleep(0.02)


class Toy(Emulator):
    name = "toy"
    seeds = ("empty", "one")

    def __init__(self) -> None:
        super().__init__()
        self.items: list[str] = []

    def routes(self) -> list[BaseRoute]:
        async def items(request: Request) -> Response:
            if request.method == "POST":
                self.items.append((await request.json())["name"])
            return JSONResponse(self.items)

        return [Route("/items", items, methods=["GET", "POST"])]

    def reset_state(self) -> None:
        self.items = []

    def load_seed(self, name: str) -> None:
        if name == "one":
            self.items.append("seeded")

    def fault_response(self, rule: FaultRule, request: Request) -> Response:
        return JSONResponse({"toy_error": rule.error}, status_code=rule.status or 503)

    def dump_state(self) -> dict[str, Any]:
        return {"items": self.items}

    def restore_state(self, data: dict[str, Any]) -> None:
        self.items = list(data["items"])

    def summary(self) -> dict[str, Any]:
        return {"items": len(self.items)}

    def credentials(self) -> dict[str, str]:
        return {}


def test_rule_needs_one_effect() -> None:
    with pytest.raises(ValueError, match="needs an effect"):
        FaultRule(path="/x")
    with pytest.raises(ValueError, match="one thing"):
        FaultRule(error="x", hang=True)
    with pytest.raises(ValueError, match="unknown fault rule keys"):
        FaultRule.from_dict({"error": "x", "pth": "/x"})


def test_count_and_probability() -> None:
    faults = FaultSet(seed=1)
    faults.add(path="^/a", error="boom", count=2)
    assert faults.for_request("GET", "/b") is None
    assert faults.for_request("GET", "/a/1") is not None
    assert faults.for_request("POST", "/a/2") is not None
    assert faults.for_request("GET", "/a/3") is None  # spent and removed
    assert faults.rules() == []
    faults.add(error="boom", probability=0.5)
    fired = sum(faults.for_request("GET", "/x") is not None for _ in range(1000))
    assert 400 < fired < 600


def test_method_filter_and_webhook_rules_are_separate() -> None:
    faults = FaultSet()
    faults.add(method="post", error="boom")
    faults.add(webhook="drop", path="example")
    assert faults.for_request("GET", "/x") is None
    assert faults.for_request("POST", "/x") is not None
    assert faults.for_webhook("http://example/hook") is not None
    assert faults.for_webhook("http://other/hook") is None


def test_control_api_faults_calls_seed_reset() -> None:
    toy = Toy()
    with serve(toy) as server, httpx.Client(base_url=server.url) as client:
        assert client.post("/items", json={"name": "a"}).json() == ["a"]
        rule = client.post("/_sandbox/faults", json={"path": "^/items", "error": "down", "count": 1})
        assert rule.status_code == 201
        failed = client.get("/items")
        assert failed.status_code == 503 and failed.json() == {"toy_error": "down"}
        assert client.get("/items").json() == ["a"]
        calls = client.get("/_sandbox/calls").json()
        assert calls["total"] == 3
        assert calls["by_endpoint"] == {"POST /items": 1, "GET /items": 2}
        assert toy.calls.count("GET", "/items") == 2
        bad = client.post("/_sandbox/faults", json={"path": "/x"})
        assert bad.status_code == 400 and "needs an effect" in bad.json()["error"]
        assert client.post("/_sandbox/seed/nope").status_code == 400
        assert client.post("/_sandbox/seed/one").json() == {"items": 1}
        assert client.get("/_sandbox/state").json() == {"emulator": "toy", "items": 1}
        client.post("/_sandbox/reset")
        assert client.get("/items").json() == []


def test_latency_rule_delays() -> None:
    toy = Toy()
    with serve(toy) as server, httpx.Client(base_url=server.url) as client:
        toy.faults.add(path="^/items", latency_ms=200, count=1)
        started = time.perf_counter()
        assert client.get("/items").status_code == 200
        assert time.perf_counter() - started >= 0.19


def test_retry_after_goes_with_error_rules_only() -> None:
    with pytest.raises(ValueError, match="retry_after goes with an error or status rule"):
        FaultRule(path="/x", latency_ms=5, retry_after=3)
    with pytest.raises(ValueError, match="non-negative"):
        FaultRule(status=429, retry_after=-1)
    with pytest.raises(ValueError, match="seconds or an HTTP date"):
        FaultRule.from_dict({"status": 429, "retry_after": [1]})
    assert FaultRule(status=429, retry_after=2.0).retry_after_header() == "2"
    assert FaultRule(status=429, retry_after=1.5).retry_after_seconds(60) == 2
    assert FaultRule(status=429).retry_after_seconds(60) == 60


@pytest.mark.parametrize("retry_after", [3, "Fri, 31 Dec 2038 23:59:59 GMT"])
def test_a_fault_rule_sends_retry_after(retry_after: int | str) -> None:
    toy = Toy()
    with serve(toy) as server, httpx.Client(base_url=server.url) as client:
        added = client.post(
            "/_sandbox/faults", json={"path": "^/items", "status": 429, "retry_after": retry_after}
        )
        assert added.status_code == 201 and added.json()["retry_after"] == retry_after
        refused = client.get("/items")
        assert refused.status_code == 429 and refused.headers["Retry-After"] == str(retry_after)
        client.delete("/_sandbox/faults")
        assert "Retry-After" not in client.get("/items").headers


def test_hang_serves_the_request_and_withholds_the_answer_until_the_client_gives_up() -> None:
    toy = Toy()
    with serve(toy) as server, httpx.Client(base_url=server.url) as client:
        toy.faults.add(path="^/items", method="POST", hang=True, count=1)  # hang_seconds: 120
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            client.post("/items", json={"name": "lost reply"}, timeout=0.5)
        # the write landed although nobody got the answer, long before hang_seconds
        wait_until(lambda: toy.items == ["lost reply"], timeout=10)
        assert time.monotonic() - started < 10
        wait_until(lambda: toy.calls.count("POST", "/items") == 1, timeout=10)
        # the client retries the same write: it lands a second time (what idempotency is for)
        assert client.post("/items", json={"name": "lost reply"}).json() == ["lost reply", "lost reply"]


def test_hang_answers_a_patient_client_after_hang_seconds() -> None:
    toy = Toy()
    with serve(toy) as server, httpx.Client(base_url=server.url) as client:
        toy.faults.add(path="^/items", hang=True, hang_seconds=0.3, count=1)
        started = time.monotonic()
        reply = client.post("/items", json={"name": "late"}, timeout=10)
        assert reply.status_code == 200 and reply.json() == ["late"]
        assert time.monotonic() - started >= 0.29
        assert toy.calls.count("POST", "/items") == 1
