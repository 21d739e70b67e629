"""Kill the worker process at random moments while changes flow: nothing lost, nothing doubled.

Each kill lands while the worker holds changes: the test waits on the queue until the new worker
process has leased some, then waits a random moment more. The random choices come from seeded
generators, one per thread; the seed is printed (set ``CRMSYNC_TEST_SEED`` to replay a failure).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from crmsync.client import Client
from crmsync.sandbox.salesforce import SalesforceEmulator
from crmsync.store.schema import changes, utcnow

from ..conftest import Crmsync, wait_until
from .test_usage_billing import contracts, live_usage


def start_worker(crm: Crmsync, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "crmsync", "worker", "-c", str(crm.config_path), "--concurrency", "2"],
            stdout=subprocess.DEVNULL,
            stderr=out,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def leased_by(crm: Crmsync, pid: int) -> int:
    """How many changes the worker process ``pid`` holds now (owners are ``host:pid:thread``)."""
    c = changes.c
    query = sa.select(sa.func.count()).where(
        c.state == "leased", c.lease_owner.like(f"%:{pid}:%"), c.leased_until > utcnow()
    )
    with crm.runtime.store.read() as conn:
        return int(conn.execute(query).scalar_one())


def test_sigkilled_workers_lose_and_duplicate_nothing(
    salesforce: SalesforceEmulator, crmsync_factory: Callable[..., Crmsync], tmp_path: Path
) -> None:
    log = tmp_path / "workers.log"
    crm = crmsync_factory(workers=0, lease_seconds=1, batch_size=100)  # the web app only
    open_contracts = contracts(salesforce, "Activated")
    seed = int(os.environ.get("CRMSYNC_TEST_SEED") or random.SystemRandom().randrange(2**32))
    print(f"crash test seed: {seed} (CRMSYNC_TEST_SEED={seed} replays it)")
    rnd = random.Random(seed)  # the application's thread
    killer = random.Random(seed + 1)  # this thread's
    expected: dict[str, dict[str, Any] | None] = {}
    submitted = threading.Event()

    def application() -> None:
        live: list[str] = []
        with Client(crm.base_url, crm.token) as client:
            batch: list[Any] = []
            for i in range(2000):
                roll = rnd.random()
                key = f"k-{i}"
                fields: dict[str, Any] = {}
                if live and roll < 0.15:
                    key = rnd.choice(live)
                    fields = {"quantity": rnd.randint(2, 9)}
                    expected[key] = {**(expected[key] or {}), **fields}
                    batch.append({"key": key, "fields": fields})
                elif live and roll < 0.25:
                    key = live.pop(rnd.randrange(len(live)))
                    expected[key] = None
                    batch.append({"key": key, "operation": "delete"})
                else:
                    fields = {"contract_id": rnd.choice(open_contracts), "product": "S", "quantity": 1}
                    expected[key] = fields
                    live.append(key)
                    batch.append({"key": key, "fields": fields})
                if len(batch) == 10 or i == 1999:
                    # the records of one request are queued in the order of the list
                    client.submit("usage", batch)
                    batch = []
                    time.sleep(0.04)  # a stream over several seconds, not one burst
        submitted.set()

    # Salesforce takes half a second per write, so that a worker holds its changes for a while: a
    # kill a random moment after it was seen holding them lands while it still holds them.
    salesforce.faults.add(method="PATCH", path="/composite/sobjects", latency_ms=500)
    app = threading.Thread(target=application)
    app.start()
    kills = holding = 0
    while kills < 6 and not (submitted.is_set() and crm.settled()):
        worker = start_worker(crm, log)
        try:  # wait until it holds changes, then a random moment more
            wait_until(
                lambda w=worker: leased_by(crm, w.pid) > 0 or (crm.settled() and submitted.is_set()),
                60,
                0.02,
            )
            time.sleep(killer.uniform(0.0, 0.2))
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
        holding += leased_by(crm, worker.pid) > 0  # a dead worker's leases stay until they expire
        kills += 1
    print(f"{kills} kills, {holding} of them while the worker held changes")
    assert holding >= 1, f"no kill caught a worker holding changes (seed {seed})"
    app.join()
    assert submitted.is_set()

    started_before = log.read_text().count(" started")
    final = start_worker(crm, log)
    try:
        # its SIGTERM handler is in place once its worker threads say they started
        wait_until(lambda: log.read_text().count(" started") >= started_before + 2, timeout=60)
        wait_until(crm.settled, timeout=120)
    finally:
        final.send_signal(signal.SIGTERM)
        final.wait(timeout=30)
    assert final.returncode == 0, log.read_text()

    landed = live_usage(salesforce)  # also asserts no Ad_Id__c appears twice
    want = {k: v for k, v in expected.items() if v is not None}
    lost = set(want) - set(landed)
    extra = set(landed) - set(want)
    assert not lost and not extra, f"{len(lost)} lost, {len(extra)} that should not be there"
    wrong = [k for k, v in want.items() if float(landed[k]["Quantity__c"]) != v["quantity"]]
    assert not wrong, f"{len(wrong)} records hold an older correction"
    assert crm.runtime.queue.stats().dead == 0
