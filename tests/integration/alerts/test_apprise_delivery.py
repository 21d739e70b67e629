"""Real apprise deliveries (``json://``) to a local receiver: a dead letter gives exactly one
alert, its recovery exactly one notice, on each of the three store databases."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crmsync.alerts import Alerter, check_dead_letters, check_queue_lag, dead_letter_alert
from crmsync.engine.backoff import Backoff
from crmsync.engine.queue import ChangeQueue, NewChange, QueueStats
from crmsync.errors import FixTheData
from crmsync.sandbox.server import BackgroundServer
from crmsync.store import Store


class Receiver:
    """A JSON webhook that records what it is sent; ``status`` is what it answers."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.status = 200
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/hook/{secret}", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> Response:
        body = json.loads(await request.body())
        with self._lock:
            self.posts.append({"path": request.url.path, **body})
        return Response(status_code=self.status)

    def titles(self) -> list[str]:
        with self._lock:
            return [p["title"] for p in self.posts]


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Receiver, BackgroundServer]]:
    rec = Receiver()
    with BackgroundServer(rec.app) as server:
        yield rec, server


@pytest.fixture
def hook(receiver: tuple[Receiver, BackgroundServer]) -> tuple[Receiver, str]:
    rec, server = receiver
    rec.posts.clear()
    rec.status = 200
    return rec, f"json://127.0.0.1:{server.port}/hook/s3cret-path-token"


def test_a_dead_letter_gives_one_alert_and_its_recovery_one_notice(
    store: Store, hook: tuple[Receiver, str]
) -> None:
    rec, url = hook
    queue = ChangeQueue(store, lease_seconds=30, backoff=Backoff(jitter=0))
    alerter = Alerter(store, [url])
    queue.enqueue([NewChange("board", "leads", f"item-{i}", "upsert", {"name": "x"}) for i in range(3)])
    ids = []
    for change in queue.claim("worker-1"):
        error = FixTheData("REQUIRED_FIELD_MISSING: LastName", object_name="Lead", record=change.record_key)
        ids.append(queue.dead(change, error))
        dead_letter_alert(alerter, change.flow, change.record_key, error)  # what the worker does
    assert rec.titles() == ["[crmsync] dead letters in flow leads"]
    [alert] = rec.posts
    assert alert["type"] == "failure" and alert["path"] == "/hook/s3cret-path-token"
    assert (
        "Record item-0 of flow leads failed for good: FixTheData: REQUIRED_FIELD_MISSING" in alert["message"]
    )

    assert not check_dead_letters(alerter)  # the letters are still there
    queue.discard(ids[:2])
    assert not check_dead_letters(alerter)
    queue.replay(ids[2:])
    assert check_dead_letters(alerter)
    assert not check_dead_letters(alerter)
    assert rec.titles() == [
        "[crmsync] dead letters in flow leads",
        "[crmsync] Resolved: dead letters in flow leads",
    ]
    assert rec.posts[1]["type"] == "success"
    assert rec.posts[1]["message"].startswith("Flow leads has no dead letters left.")


def test_a_receiver_that_fails_is_tried_again_and_then_told_once(
    store: Store, hook: tuple[Receiver, str], caplog: pytest.LogCaptureFixture
) -> None:
    rec, url = hook
    caplog.set_level(logging.DEBUG)
    alerter = Alerter(store, [url], retry_after=timedelta(0))
    rec.status = 500
    lagging = QueueStats(pending=5, leased=0, dead=0, retrying=0, oldest_pending_age=900.0)
    assert not check_queue_lag(alerter, lagging, 300)
    rec.status = 200
    assert check_queue_lag(alerter, lagging, 300)
    assert not check_queue_lag(alerter, lagging, 300)
    assert len(rec.posts) == 2  # the refused delivery, then the one that landed
    assert "/hook/****" in caplog.text  # apprise logged the URL it posted to, masked
    assert "s3cret-path-token" not in caplog.text
