"""Several workers — threads, then processes — drain one queue while changes keep arriving.

Each worker writes an ``applied`` sync-log line *while it holds the lease*, then completes. As a
record is held by one worker at a time, the log's order per record is the order the record's
changes were applied in; it must be exactly the order they were enqueued in, each change once.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
from collections import defaultdict

import sqlalchemy as sa

from crmsync.engine.backoff import Backoff
from crmsync.engine.queue import ChangeQueue, NewChange
from crmsync.errors import RetryLater
from crmsync.store import Store, synclog, watermarks
from crmsync.store.schema import changes, sync_log

RECORDS = 30
WAVES = 4

WORKER = """
import random, sys, time
from crmsync.engine.backoff import Backoff
from crmsync.engine.queue import ChangeQueue
from crmsync.errors import RetryLater
from crmsync.store import Store, synclog, watermarks

store = Store(sys.argv[1])
owner = sys.argv[2]
queue = ChangeQueue(store, backoff=Backoff(initial=0.0, jitter=0))
rng = random.Random(owner)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    claimed = queue.claim(owner, 7)
    if not claimed:
        stats = queue.stats()
        if watermarks.get(store, "test", "producer") == "done" and stats.pending + stats.leased == 0:
            break
        time.sleep(0.005)
        continue
    for change in claimed:
        if rng.random() < 0.2:
            queue.retry(change, RetryLater("flaky target"))
            continue
        synclog.record(store, flow=change.flow, record_key=change.record_key, outcome="applied",
                       change_ids=list(change.change_ids), message=str(change.fields["seq"]))
        queue.complete([change])
else:
    sys.exit("worker timed out")
store.dispose()
"""


def _wave(queue: ChangeQueue, wave: int) -> None:
    batch = [
        NewChange("app", "f", f"r{r}", "upsert", {"seq": wave * 10 + i, f"w{wave}": i}, f"d{wave}-{r}-{i}")
        for i in range(2)
        for r in range(RECORDS)
    ]
    random.Random(wave).shuffle(batch)  # records interleave; each record's own order is kept below
    batch.sort(key=lambda c: int(c.delivery_id.rsplit("-", 1)[1]) if c.delivery_id else 0)
    assert queue.enqueue(batch).accepted == len(batch)


def _check_applied_in_order_exactly_once(store: Store) -> None:
    with store.read() as conn:
        expected: dict[str, list[int]] = defaultdict(list)
        for row in conn.execute(sa.select(changes.c.record_key, changes.c.id).order_by(changes.c.id)):
            expected[row.record_key].append(row.id)
        applied: dict[str, list[int]] = defaultdict(list)
        last_seq: dict[str, int] = {}
        for row in conn.execute(sa.select(sync_log).order_by(sync_log.c.id)):
            applied[row.record_key].extend(row.change_ids)
            last_seq[row.record_key] = int(row.message)
        states = {r[0] for r in conn.execute(sa.select(changes.c.state).distinct())}
    assert states == {"done"}
    assert len(expected) == RECORDS
    for key, ids in expected.items():
        assert applied[key] == ids, key
        assert last_seq[key] == (WAVES - 1) * 10 + 1  # the net fields of the last fold are the newest


def test_threads_never_apply_a_records_changes_out_of_order_or_twice(store: Store) -> None:
    queue = ChangeQueue(store, backoff=Backoff(initial=0.0, jitter=0))
    _wave(queue, 0)
    producer_done = threading.Event()
    holding: set[str] = set()
    guard = threading.Lock()
    violations: list[str] = []
    errors: list[BaseException] = []

    def work(owner: str) -> None:
        rng = random.Random(owner)
        try:
            while True:
                claimed = queue.claim(owner, 7)
                if not claimed:
                    stats = queue.stats()
                    if producer_done.is_set() and stats.pending + stats.leased == 0:
                        return
                    continue
                with guard:
                    for change in claimed:
                        if change.record_key in holding:
                            violations.append(change.record_key)
                        holding.add(change.record_key)
                for change in claimed:
                    if rng.random() < 0.2:
                        with guard:
                            holding.discard(change.record_key)
                        queue.retry(change, RetryLater("flaky target"))
                        continue
                    synclog.record(
                        store,
                        flow=change.flow,
                        record_key=change.record_key,
                        outcome="applied",
                        change_ids=list(change.change_ids),
                        message=str(change.fields["seq"]),
                    )
                    with guard:
                        holding.discard(change.record_key)
                    queue.complete([change])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for wave in range(1, WAVES):
        _wave(queue, wave)
    producer_done.set()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    assert errors == []
    assert violations == []
    _check_applied_in_order_exactly_once(store)


def test_processes_never_apply_a_records_changes_out_of_order_or_twice(store: Store) -> None:
    queue = ChangeQueue(store)
    _wave(queue, 0)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, store.url, f"p{i}"], stderr=subprocess.PIPE, text=True
        )
        for i in range(3)
    ]
    try:
        for wave in range(1, WAVES):
            _wave(queue, wave)
        watermarks.put(store, "test", "producer", "done")
        for worker in workers:
            _, err = worker.communicate(timeout=90)
            assert worker.returncode == 0, err
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    _check_applied_in_order_exactly_once(store)
