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
from typing import Any

from crmsync.client import Client
from crmsync.sandbox.salesforce import SalesforceEmulator

from ..conftest import Crmsync, wait_until
from .test_usage_billing import contracts, live_usage


def start_worker(crm: Crmsync) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "crmsync", "worker", "-c", str(crm.config_path), "--concurrency", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_sigkilled_workers_lose_and_duplicate_nothing(
    salesforce: SalesforceEmulator, crmsync_factory: Callable[..., Crmsync]
) -> None:
    crm = crmsync_factory(workers=0, lease_seconds=1, batch_size=100)  # the web app only
    open_contracts = contracts(salesforce, "Activated")
    rnd = random.Random(11)
    expected: dict[str, dict[str, Any] | None] = {}
    submitted = threading.Event()

    def application() -> None:
        live: list[str] = []
        with Client(crm.base_url, crm.token) as client:
            for i in range(2000):
                roll = rnd.random()
                if live and roll < 0.15:
                    key = rnd.choice(live)
                    fields: dict[str, Any] = {"quantity": rnd.randint(2, 9)}
                    client.upsert("usage", key, fields)
                    expected[key] = {**(expected[key] or {}), **fields}
                elif live and roll < 0.25:
                    key = live.pop(rnd.randrange(len(live)))
                    client.delete("usage", key)
                    expected[key] = None
                else:
                    key = f"k-{i}"
                    fields = {"contract_id": rnd.choice(open_contracts), "product": "S", "quantity": 1}
                    client.upsert("usage", key, fields)
                    expected[key] = fields
                    live.append(key)
                if i % 100 == 0:
                    time.sleep(0.05)  # a stream over a few seconds, not one burst
        submitted.set()

    app = threading.Thread(target=application)
    app.start()
    kills = 0
    while kills < 6:
        worker = start_worker(crm)
        time.sleep(rnd.uniform(0.4, 1.5))  # a random moment in its life
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        kills += 1
    app.join()
    assert submitted.is_set()

    final = start_worker(crm)
    try:
        wait_until(crm.settled, timeout=120)
    finally:
        final.send_signal(signal.SIGTERM)
        _, err = final.communicate(timeout=30)
    assert final.returncode == 0, err.decode()

    landed = live_usage(salesforce)  # also asserts no Ad_Id__c appears twice
    want = {k: v for k, v in expected.items() if v is not None}
    lost = set(want) - set(landed)
    extra = set(landed) - set(want)
    assert not lost and not extra, f"{len(lost)} lost, {len(extra)} that should not be there"
    wrong = [k for k, v in want.items() if float(landed[k]["Quantity__c"]) != v["quantity"]]
    assert not wrong, f"{len(wrong)} records hold an older correction"
    assert crm.runtime.queue.stats().dead == 0
