"""Kill the worker process at random moments while changes flow: nothing lost, nothing doubled."""

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

from crmsync.client import Client
from crmsync.sandbox.salesforce import SalesforceEmulator

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


def test_sigkilled_workers_lose_and_duplicate_nothing(
    salesforce: SalesforceEmulator, crmsync_factory: Callable[..., Crmsync], tmp_path: Path
) -> None:
    log = tmp_path / "workers.log"
    crm = crmsync_factory(workers=0, lease_seconds=1, batch_size=100)  # the web app only
    open_contracts = contracts(salesforce, "Activated")
    rnd = random.Random(11)
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
                    time.sleep(0.01)  # a stream over several seconds, not one burst
        submitted.set()

    app = threading.Thread(target=application)
    app.start()
    kills = holding = 0
    while kills < 6:
        worker = start_worker(crm, log)
        time.sleep(rnd.uniform(0.8, 2.0))  # a random moment in its life
        holding += crm.runtime.queue.stats().leased > 0
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        kills += 1
    assert holding >= 1, "no kill caught a worker holding changes: the test proved nothing"
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
