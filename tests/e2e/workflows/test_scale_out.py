"""Several ``crmsync worker`` processes on one PostgreSQL store drain a backlog together, and no
change is applied twice — checked in the Salesforce org's write journal (every write a call made).

The speed of 1, 2 and 4 workers is ``make bench``'s business (``bench/scale.py``); this checks that
it is correct.
"""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
from pathlib import Path

from crmsync.engine.queue import ChangeQueue, NewChange
from crmsync.sandbox.salesforce import SalesforceEmulator
from crmsync.store.db import Store

from ...integration.conftest import server_database
from ..conftest import wait_until, write_config
from .test_usage_billing import contracts

ENTRIES = 2000
WORKERS = 4


def test_four_worker_processes_drain_a_backlog_each_change_written_once(
    salesforce: SalesforceEmulator, tmp_path: Path
) -> None:
    salesforce.faults.add(path="^/services/data", latency_ms=50)  # every call 50 ms, as over a WAN
    open_contracts = contracts(salesforce, "Activated")
    with server_database("postgresql") as url:
        config = write_config(tmp_path, salesforce, concurrency=4, batch_size=50, lease_seconds=30)
        config.write_text(config.read_text().replace(f"sqlite:///{tmp_path / 'crmsync.db'}", url))
        crmsync = [sys.executable, "-m", "crmsync"]
        subprocess.run([*crmsync, "db", "upgrade", "-c", str(config)], check=True, capture_output=True)
        store = Store(url)
        queue = ChangeQueue(store)
        logs = [tmp_path / f"worker-{i}.log" for i in range(WORKERS)]
        procs = []
        for log in logs:
            with log.open("wb") as out:
                procs.append(
                    subprocess.Popen(
                        [*crmsync, "worker", "-c", str(config), "--no-scheduler"],
                        stdout=subprocess.DEVNULL,
                        stderr=out,
                    )
                )
        try:
            # every process is claiming (an empty queue) before the backlog appears, in one transaction
            wait_until(lambda: all(" started" in log.read_text() for log in logs), timeout=60)
            queue.enqueue(
                [
                    NewChange(
                        source="service_app",
                        flow="usage",
                        record_key=f"scale-{i}",
                        operation="upsert",
                        fields={
                            "contract_id": open_contracts[i % len(open_contracts)],
                            "product": "M",
                            "quantity": i,
                        },
                    )
                    for i in range(ENTRIES)
                ]
            )

            def drained() -> bool:
                s = queue.stats()
                return s.pending == 0 and s.leased == 0 and s.retrying == 0

            wait_until(drained, timeout=180)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            statuses = [proc.wait(timeout=60) for proc in procs]
        assert queue.stats().dead == 0
        store.dispose()
    assert statuses == [0] * WORKERS, [log.read_text()[-2000:] for log in logs]

    # the journal names each write's record: by record id, then by its external id
    external = {r["Id"]: r["Ad_Id__c"] for r in salesforce.records("Usage__c", include_deleted=True)}
    writes = collections.Counter(
        external.get(c["id"]) for c in salesforce.changes("Usage__c", client="crmsync")
    )
    keys = {f"scale-{i}" for i in range(ENTRIES)}
    assert {k for k in writes if k and k.startswith("scale-")} == keys, "a change was never written"
    twice = sorted(k for k in keys if writes[k] != 1)
    assert not twice, f"written more than once: {twice[:10]}"
    landed = {r["Ad_Id__c"]: r for r in salesforce.records("Usage__c") if r["Ad_Id__c"] in keys}
    assert {k: float(r["Quantity__c"]) for k, r in landed.items()} == {
        f"scale-{i}": float(i) for i in range(ENTRIES)
    }
    # the work was shared: more than one process applied some of it
    applied = [log.read_text().count(" applied to salesforce Usage__c") for log in logs]
    assert sum(1 for n in applied if n) >= 2, applied
