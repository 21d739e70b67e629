"""Draining a backlog: 10,000 queued entries into a zero-latency Salesforce sandbox."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import crmsync, crmsync_process, recipe_config, sandbox, wait_for
from crmsync.engine.queue import ChangeQueue, NewChange
from crmsync.store.db import Store


def run(quick: bool = False, entries: int = 10_000) -> dict[str, Any]:
    with sandbox("demo") as box:
        directory = Path(tempfile.mkdtemp(prefix="crmsync-bench-drain-"))
        url = f"sqlite:///{directory / 'crmsync.db'}"
        config = recipe_config(
            directory, box.env, url, concurrency=2, batch_size=1000, poll_interval_seconds=0.05
        )
        crmsync("db", "upgrade", "-c", str(config))
        store = Store(url)
        queue = ChangeQueue(store)
        contracts = box.info["contracts"]
        changes = [
            NewChange(
                source="service_app",
                flow="usage",
                record_key=f"d-{i}",
                operation="upsert",
                fields={"contract_id": contracts[i % len(contracts)], "product": "M", "quantity": 2},
            )
            for i in range(entries)
        ]
        for start in range(0, entries, 1000):
            queue.enqueue(changes[start : start + 1000])
        sf_url = box.info["urls"]["salesforce"]
        calls_before = httpx.get(f"{sf_url}/_sandbox/calls", verify=box.tls).json()["total"]
        started = time.perf_counter()
        with crmsync_process("worker", config):

            def drained() -> bool:
                s = queue.stats()
                return s.pending == 0 and s.leased == 0 and s.retrying == 0

            wait_for(drained, 300, "backlog drained")
            elapsed = time.perf_counter() - started
        calls = httpx.get(f"{sf_url}/_sandbox/calls", verify=box.tls).json()
        store.dispose()
    used = calls["total"] - calls_before
    return {
        "entries": entries,
        "seconds_including_worker_start": round(elapsed, 2),
        "entries_per_s": round(entries / elapsed, 1),
        "salesforce_calls": used,
        "salesforce_calls_by_endpoint": calls["by_endpoint"],
        "entries_per_call": round(entries / max(1, used), 1),
    }
