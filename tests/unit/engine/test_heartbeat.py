"""The lease heartbeat: one thread for a worker's batches in a row, extending only what is in hand."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from tests.e2e.conftest import wait_until

from crmsync.engine.queue import ChangeQueue, ClaimedChange
from crmsync.engine.worker import Heartbeat


class FakeQueue:
    """Records each extension; ``taken`` ids are held by another worker."""

    def __init__(self) -> None:
        self.extended: list[tuple[tuple[int, ...], threading.Thread]] = []
        self.taken: set[int] = set()

    def extend(self, claimed: Sequence[ClaimedChange], seconds: float) -> set[int]:
        ids = tuple(i for c in claimed for i in c.change_ids)
        self.extended.append((ids, threading.current_thread()))
        return set(ids) - self.taken


def change(n: int) -> ClaimedChange:
    return ClaimedChange(
        change_ids=(n,),
        source="app",
        flow="f",
        record_key=f"r{n}",
        operation="upsert",
        fields={},
        attempts=0,
        created_at=datetime.now(UTC),
        lease_owner="w",
    )


def test_one_thread_keeps_the_leases_of_batch_after_batch_and_ends_when_idle() -> None:
    queue = FakeQueue()
    heart = Heartbeat(cast(ChangeQueue, queue))
    threads: set[Any] = set()
    for n in (1, 2, 3):
        batch = [change(n)]
        heart.watch(lambda batch=batch: batch, 0.15)  # a beat every 0.05 s
        wait_until(lambda n=n: any(ids == (n,) for ids, _ in queue.extended), timeout=5)
        heart.done()
        threads |= {t for ids, t in queue.extended if ids == (n,)}
    assert len(threads) == 1  # not a thread per batch
    extended = len(queue.extended)
    [thread] = threads
    wait_until(lambda: not thread.is_alive(), timeout=5)  # idle: it ends on its own
    assert len(queue.extended) == extended  # nothing extended without a batch in hand

    queue.taken = {4}
    lost = change(4)
    heart.watch(lambda: [lost], 0.15)  # the next batch starts another
    wait_until(lambda: heart.lost(lost), timeout=5)
    heart.watch(lambda: [change(5)], 0.15)
    assert not heart.lost(lost)  # what was lost is the batch's own
    heart.close()  # joins the thread it had
    assert not any(t.is_alive() for _, t in queue.extended)
