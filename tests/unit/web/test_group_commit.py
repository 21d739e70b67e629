"""Group commit: concurrent ingest requests share one transaction, each answered once it committed;
past the backlog the API answers 503 with Retry-After, and the client sends the same records again."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from crmsync.client import Client
from crmsync.engine.queue import ChangeQueue, EnqueueResult, NewChange
from crmsync.engine.runtime import Runtime
from crmsync.errors import RetryLater
from crmsync.store import Store, schema, tokens
from crmsync.web.commit import GroupCommitter
from crmsync.web.errors import ApiError

from .conftest import MakeRuntime, OpenClient
from .test_ingest import CONFIG

T = TypeVar("T")


def run_apart(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` on an event loop of its own thread: the test process may hold a running loop
    (the browser tests' driver), where ``asyncio.run`` refuses to start."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(main())).result()


class HeldQueue(ChangeQueue):
    """A queue whose commits wait for ``let_through`` (so requests pile up behind the first)."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.let_through = threading.Event()
        self.entered = threading.Event()
        self.groups: list[int] = []
        self.failing_call: int | None = None  # the commit (1, 2, …) whose transaction fails after inserting

    def enqueue_groups(self, groups: Sequence[Sequence[NewChange]]) -> list[EnqueueResult]:
        self.entered.set()
        assert self.let_through.wait(10)
        self.groups.append(len(groups))
        if self.failing_call != len(self.groups):
            return super().enqueue_groups(groups)

        def failing(conn: sa.Connection) -> list[EnqueueResult]:
            self._enqueue_groups(conn, groups)
            raise sa.exc.OperationalError("INSERT", {}, Exception("disk I/O error"))

        return self.store.run(failing)


def change(key: str, delivery_id: str | None = None) -> NewChange:
    return NewChange("shop", "orders", key, "upsert", {"n": key}, delivery_id=delivery_id)


def stored(store: Store) -> list[str]:
    with store.read() as conn:
        return list(
            conn.execute(sa.select(schema.changes.c.record_key).order_by(schema.changes.c.id)).scalars()
        )


def test_requests_arriving_during_a_commit_share_the_next_one_and_learn_their_own_result(
    store: Store,
) -> None:
    queue = HeldQueue(store)
    committer = GroupCommitter(queue)
    first = committer.submit([change("a")])
    assert queue.entered.wait(10)  # the first commit runs (and waits)
    later = [committer.submit([change(f"b{i}"), change(f"c{i}", delivery_id="same")]) for i in range(10)]
    assert not first.done() and not any(f.done() for f in later)  # nothing answered before its commit
    assert stored(store) == []
    queue.let_through.set()
    assert first.result(10) == EnqueueResult(1, 0)
    results = [f.result(10) for f in later]
    committer.close()
    assert queue.groups == [1, 10] and committer.commits == 2 and committer.requests == 11
    # one delivery id in several requests of a group: the first request queues it, the rest count it
    assert results[0] == EnqueueResult(2, 0) and all(r == EnqueueResult(1, 1) for r in results[1:])
    assert stored(store) == ["a", "b0", "c0", *(f"b{i}" for i in range(1, 10))]


def test_a_failed_group_commit_fails_every_request_of_the_group_and_stores_none(store: Store) -> None:
    queue = HeldQueue(store)
    committer = GroupCommitter(queue)
    first = committer.submit([change("a")])
    assert queue.entered.wait(10)
    bad = [
        committer.submit([change("x")]),
        committer.submit([change("y")]),
    ]
    queue.failing_call = 2
    queue.let_through.set()
    for future in bad:
        with pytest.raises(sa.exc.OperationalError):
            future.result(10)
    committer.close()
    assert first.result(10) == EnqueueResult(1, 0) and queue.groups == [1, 2]
    assert stored(store) == ["a"]


@pytest.fixture
def held_api(make_runtime: MakeRuntime, open_client: OpenClient) -> tuple[TestClient, Runtime, HeldQueue]:
    runtime = make_runtime(CONFIG.replace("max_batch: 50}", "max_batch: 50, ingest_backlog: 1}"))
    held = HeldQueue(runtime.store)
    runtime.queue = held
    return open_client(runtime, bearer=tokens.create_token(runtime.store, "shop")), runtime, held


def test_past_the_backlog_the_api_answers_503_with_retry_after_and_stores_nothing(
    held_api: tuple[TestClient, Runtime, HeldQueue],
) -> None:
    client, runtime, held = held_api
    answers: list[httpx.Response] = []
    first = threading.Thread(
        target=lambda: answers.append(client.post("/api/v1/flows/orders/records", json={"key": "o1"}))
    )
    first.start()
    assert held.entered.wait(10)  # the first request is in progress: waiting for its commit
    busy = client.post("/api/v1/flows/orders/records", json={"key": "o2"})
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert busy.json()["error"]["code"] == "busy" and "web.ingest_backlog" in busy.json()["error"]["message"]
    held.let_through.set()
    first.join(10)
    assert answers[0].status_code == 202 and answers[0].json() == {"accepted": 1, "duplicates": 0}
    assert stored(runtime.store) == ["o1"]
    again = client.post("/api/v1/flows/orders/records", json={"key": "o2"})  # room again
    assert again.status_code == 202


def test_the_client_sends_a_refused_request_again_with_the_same_delivery_ids() -> None:
    bodies: list[dict[str, Any]] = []
    slept: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        if len(bodies) == 1:
            return httpx.Response(
                503, headers={"Retry-After": "1"}, json={"error": {"code": "busy", "message": "m"}}
            )
        if len(bodies) == 2:
            return httpx.Response(429, json={"error": {"code": "rate", "message": "m"}})
        return httpx.Response(202, json={"accepted": 2, "duplicates": 0})

    with Client("http://crmsync", "t", transport=httpx.MockTransport(answer), sleep=slept.append) as crm:
        assert crm.submit("usage", [{"key": "a"}, {"key": "b", "delivery_id": "mine"}]) == {
            "accepted": 2,
            "duplicates": 0,
        }
    ids = [[r["delivery_id"] for r in body["records"]] for body in bodies]
    assert len(ids) == 3 and ids[0] == ids[1] == ids[2] and ids[0][1] == "mine" and ids[0][0]
    assert slept == [1.0, 2.0]  # Retry-After, then the back-off of the second attempt


def test_the_client_gives_up_after_its_retries() -> None:
    calls: list[int] = []

    def busy(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(
            503, headers={"Retry-After": "120"}, json={"error": {"code": "busy", "message": "m"}}
        )

    slept: list[float] = []
    with (
        Client(
            "http://crmsync",
            "t",
            transport=httpx.MockTransport(busy),
            retries=2,
            max_wait=5,
            sleep=slept.append,
        ) as crm,
        pytest.raises(RetryLater),
    ):
        crm.upsert("usage", "a", {})
    assert len(calls) == 3 and slept == [5.0, 5.0]


def test_checks_handed_to_the_committer_run_there_and_a_refused_request_leaves_its_group_alone(
    store: Store,
) -> None:
    queue = HeldQueue(store)
    committer = GroupCommitter(queue)
    first = committer.submit([change("a")])
    assert queue.entered.wait(10)  # the first commit runs (and waits): the next three form a group
    ran_in: list[str] = []

    def check(key: str) -> list[NewChange]:
        ran_in.append(threading.current_thread().name)
        if key == "bad":
            raise ApiError(422, "invalid_value", "refused")
        return [change(key)]

    async def requests() -> list[Any]:
        answers = [committer.check_and_commit(lambda k=k: check(k)) for k in ("b", "bad", "c")]  # type: ignore[misc]
        await asyncio.sleep(0.05)
        assert not any(a.done() for a in answers) and ran_in == []  # checked with their group, not before
        queue.let_through.set()
        return await asyncio.gather(*answers, return_exceptions=True)

    results = run_apart(requests)
    committer.close()
    assert first.result(10) == EnqueueResult(1, 0)
    assert results[0] == EnqueueResult(1, 0) and results[2] == EnqueueResult(1, 0)
    assert isinstance(results[1], ApiError) and results[1].status == 422
    assert ran_in == ["group-commit"] * 3
    assert queue.groups == [1, 2] and committer.commits == 2 and committer.requests == 3
    assert stored(store) == ["a", "b", "c"]


def test_a_failed_commit_fails_the_checked_requests_of_its_group_on_their_event_loop(store: Store) -> None:
    queue = HeldQueue(store)
    committer = GroupCommitter(queue)
    committer.submit([change("a")])
    assert queue.entered.wait(10)
    queue.failing_call = 2

    async def requests() -> list[Any]:
        answers = [committer.check_and_commit(lambda k=k: [change(k)]) for k in ("x", "y")]  # type: ignore[misc]
        queue.let_through.set()
        return await asyncio.gather(*answers, return_exceptions=True)

    results = run_apart(requests)
    committer.close()
    assert all(isinstance(r, sa.exc.OperationalError) for r in results)
    assert stored(store) == ["a"]
