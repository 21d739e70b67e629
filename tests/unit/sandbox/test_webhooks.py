"""The shared webhook dispatcher: order, retries and the drop/duplicate/reorder fault rules."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crmsync.sandbox.faults import FaultSet
from crmsync.sandbox.server import BackgroundServer
from crmsync.sandbox.webhooks import Delivery, WebhookDispatcher


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[bytes]]]:
    """A callback endpoint that notes every body it is sent, in arrival order."""
    received: list[bytes] = []

    async def hook(request: Request) -> Response:
        received.append(await request.body())
        return Response(status_code=200)

    with BackgroundServer(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as server:
        yield f"{server.url}/hook", received


def deliver(dispatcher: WebhookDispatcher, url: str, *bodies: bytes) -> None:
    for body in bodies:
        dispatcher.submit(Delivery(url, body, {"Content-Type": "text/plain"}))
    assert dispatcher.wait_idle(timeout=10)


def test_reorder_holds_a_delivery_and_sends_it_after_the_next_one(receiver: tuple[str, list[bytes]]) -> None:
    url, received = receiver
    faults = FaultSet()
    faults.add(webhook="reorder", count=1)
    dispatcher = WebhookDispatcher(faults, hold_seconds=5.0)
    try:
        deliver(dispatcher, url, b"first", b"second", b"third")
    finally:
        dispatcher.stop()
    assert received == [b"second", b"first", b"third"]


def test_a_held_delivery_goes_out_when_nothing_follows_it(receiver: tuple[str, list[bytes]]) -> None:
    url, received = receiver
    faults = FaultSet()
    faults.add(webhook="reorder")  # for ever: a released delivery is not held a second time
    dispatcher = WebhookDispatcher(faults, hold_seconds=0.3)
    try:
        started = time.monotonic()
        deliver(dispatcher, url, b"alone")
        assert time.monotonic() - started >= 0.29
    finally:
        dispatcher.stop()
    assert received == [b"alone"]


def test_drop_and_duplicate(receiver: tuple[str, list[bytes]]) -> None:
    url, received = receiver
    faults = FaultSet()
    faults.add(webhook="drop", count=1)
    dispatcher = WebhookDispatcher(faults)
    try:
        deliver(dispatcher, url, b"lost", b"kept")
        faults.add(webhook="duplicate", count=1)
        deliver(dispatcher, url, b"twice")
    finally:
        dispatcher.stop()
    assert received == [b"kept", b"twice", b"twice"]
