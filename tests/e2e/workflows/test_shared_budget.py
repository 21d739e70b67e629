"""Four ``crmsync worker`` processes on one PostgreSQL store share the Salesforce org's limits: the
daily call budget is never passed and is used up while work waits, and no more requests are in
flight at once than ``concurrent_requests`` — both counted by the sandbox, which sees every call.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from crmsync.engine.queue import ChangeQueue, NewChange
from crmsync.sandbox.salesforce import SalesforceEmulator
from crmsync.store.db import Store

from ...integration.conftest import server_database
from ..conftest import wait_until, write_config
from .test_usage_billing import contracts

WORKERS = 4
API = "/services/data/v"  # the calls Salesforce counts (not the login, not the version list)
CRMSYNC = [sys.executable, "-m", "crmsync"]


def api_calls(salesforce: SalesforceEmulator) -> int:
    return sum(1 for c in salesforce.calls.calls() if c.path.startswith(API))


@contextmanager
def fleet(
    tmp_path: Path, salesforce: SalesforceEmulator, **connection: Any
) -> Iterator[tuple[Path, ChangeQueue]]:
    """Four worker processes (four threads each, one change a batch) on a fresh PostgreSQL store."""
    with server_database("postgresql") as url:
        config = write_config(
            tmp_path, salesforce, concurrency=4, batch_size=1, lease_seconds=30, connection=connection
        )
        config.write_text(config.read_text().replace(f"sqlite:///{tmp_path / 'crmsync.db'}", url))
        subprocess.run([*CRMSYNC, "db", "upgrade", "-c", str(config)], check=True, capture_output=True)
        store = Store(url)
        logs = [tmp_path / f"worker-{i}.log" for i in range(WORKERS)]
        procs = []
        for log in logs:
            with log.open("wb") as out:
                procs.append(
                    subprocess.Popen(
                        [*CRMSYNC, "worker", "-c", str(config), "--no-scheduler"],
                        stdout=subprocess.DEVNULL,
                        stderr=out,
                    )
                )
        try:
            wait_until(lambda: all(" started" in log.read_text() for log in logs), timeout=60)
            yield config, ChangeQueue(store)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            statuses = [proc.wait(timeout=60) for proc in procs]
            store.dispose()
        assert statuses == [0] * WORKERS, [log.read_text()[-2000:] for log in logs]


def backlog(salesforce: SalesforceEmulator, count: int, prefix: str) -> list[NewChange]:
    open_contracts = contracts(salesforce, "Activated")
    return [
        NewChange(
            source="service_app",
            flow="usage",
            record_key=f"{prefix}-{i}",
            operation="upsert",
            fields={"contract_id": open_contracts[i % len(open_contracts)], "product": "M", "quantity": i},
        )
        for i in range(count)
    ]


def settle(count: Callable[[], int], quiet: float) -> int:
    """Wait until ``count()`` has not changed for ``quiet`` seconds; its value then."""
    last, since = count(), time.monotonic()
    while time.monotonic() - since < quiet:
        time.sleep(0.2)
        now = count()
        if now != last:
            last, since = now, time.monotonic()
    return last


def test_four_workers_never_pass_the_daily_budget_and_use_it_up_while_work_waits(
    salesforce: SalesforceEmulator, tmp_path: Path
) -> None:
    budget = 120
    salesforce.faults.add(path="^/services/data", latency_ms=20)
    with fleet(tmp_path, salesforce, daily_call_budget=budget) as (config, queue):
        queue.enqueue(backlog(salesforce, 400, "budget"))  # two calls a change: far more than the budget
        wait_until(lambda: api_calls(salesforce) >= budget * 0.9, timeout=120)
        used = settle(lambda: api_calls(salesforce), quiet=5.0)
        stats = queue.stats()
        status = json.loads(
            subprocess.run(
                [*CRMSYNC, "status", "-c", str(config), "--json"], capture_output=True, text=True
            ).stdout
        )
    print(f"daily budget {budget}: {used} calls sent by 4 workers ({100 * used / budget:.1f} %)")
    assert used <= budget, f"{used} calls passed the budget of {budget}"
    assert used >= 0.9 * budget, f"only {used} of {budget} calls used while work waited"
    assert salesforce.api_usage == used  # the org counted the same
    assert stats.dead == 0
    assert stats.pending + stats.retrying + stats.leased > 0, "the backlog should still be waiting"
    shown = {(b["connection"], b["window"]): b for b in status["shared_budgets"]}
    own = shown[("salesforce", "crmsync calls 24 h")]
    assert (own["used"], own["limit"]) == (used, budget)
    assert shown[("salesforce", "org calls 24 h")]["limit"] == 15_000


def test_four_workers_hold_no_more_requests_in_flight_than_the_limit(
    salesforce: SalesforceEmulator, tmp_path: Path
) -> None:
    salesforce.faults.add(path="^/services/data", latency_ms=700)  # long requests
    changes = 20
    with fleet(tmp_path, salesforce, concurrent_requests=3) as (_, queue):
        queue.enqueue(backlog(salesforce, changes, "slow"))

        def drained() -> bool:
            s = queue.stats()
            return s.pending == 0 and s.leased == 0 and s.retrying == 0

        wait_until(drained, timeout=180)
        assert queue.stats().dead == 0
    peak = salesforce.calls.peak_in_flight(API)
    print(f"16 worker threads, concurrent_requests 3: at most {peak} requests in flight")
    assert peak <= 3
    assert peak == 3  # sixteen threads wanted more: the slots were what held them back
    landed = {r["Ad_Id__c"] for r in salesforce.records("Usage__c") if str(r["Ad_Id__c"]).startswith("slow-")}
    assert landed == {f"slow-{i}" for i in range(changes)}
