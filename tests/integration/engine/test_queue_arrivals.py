"""What the queue tells of arrivals, on SQLite, PostgreSQL and MariaDB: which deliveries it holds
already (a catch-up skips the events a webhook queued), and a worker of the same process woken by
a change queued."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

from crmsync.connectors.capabilities import SourceEvent
from crmsync.engine.events import EventCatchUp
from crmsync.engine.queue import ChangeQueue, NewChange
from crmsync.store import Store


def test_delivered_names_the_deliveries_queued_already(store: Store) -> None:
    queue = ChangeQueue(store)
    queue.enqueue(
        [
            NewChange("board", "f", "c1", "upsert", {}, "a1:f"),
            NewChange("board", "g", "c1", "upsert", {}, "a1:g"),
        ]
    )
    asked = {("board", "a1:f"), ("board", "a1:g"), ("board", "a2:f"), ("other", "a1:f")}
    assert queue.delivered(asked) == {("board", "a1:f"), ("board", "a1:g")}
    assert queue.delivered(set()) == set()


def _runtime(queue: ChangeQueue) -> Any:
    flows = {name: SimpleNamespace(name=name, source="board", target="reporting") for name in ("f", "g")}
    return SimpleNamespace(flows=flows, queue=queue, board_of=lambda flow, connection: "B1")


def test_a_catch_up_skips_only_the_events_every_flow_has_queued(store: Store) -> None:
    queue = ChangeQueue(store)
    events = [SourceEvent("B1", "c1", f"a{n}", "upsert", {"name": str(n)}) for n in range(4)]
    queue.enqueue(
        [
            NewChange("board", "f", "c1", "upsert", {}, "a0:f"),
            NewChange("board", "g", "c1", "upsert", {}, "a0:g"),
        ]
    )
    queue.enqueue([NewChange("board", "f", "c1", "upsert", {}, "a1:f")])  # one flow's change only
    catch_up = EventCatchUp(_runtime(queue), "board", ["f", "g"])
    assert [e.delivery_id for e in catch_up.missed(events)] == ["a1", "a2", "a3"]


def test_a_worker_waiting_for_work_wakes_when_a_change_is_queued(store: Store) -> None:
    queue = ChangeQueue(store)
    assert queue.wait_for_work(0.05) is False  # nothing came: the look's interval passed
    woke: list[float] = []

    def wait() -> None:
        started = time.monotonic()
        if queue.wait_for_work(30):
            woke.append(time.monotonic() - started)

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.2)
    queue.enqueue([NewChange("app", "f", "r1", "upsert", {"x": 1})])
    waiter.join(30)
    assert woke and woke[0] < 29, "the waiting worker was not woken by the change"
    assert [c.record_key for c in queue.claim("w")] == ["r1"]
