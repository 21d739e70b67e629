"""Scale-out: 1, 2 and 4 ``crmsync worker`` processes on PostgreSQL draining a 20,000-change backlog
(usage entries queued straight into the store) into a Salesforce sandbox that adds 50 ms to every
data call — and no change applied twice, by the org's write journal (every write the calls made).

The Salesforce emulator runs in this process (its journal is read directly); the workers are
separate processes. Each run gets a fresh database on the benchmark's PostgreSQL server
(``CRMSYNC_BENCH_PG``) and its own keys, so runs do not see each other's changes.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.common import PG_URL, recipe_config, wait_for
from crmsync.engine.queue import ChangeQueue, NewChange
from crmsync.sandbox.runner import serve
from crmsync.sandbox.salesforce import SalesforceEmulator
from crmsync.sandbox.tls import ensure_materials
from crmsync.store.db import Store
from crmsync.store.schema import sync_log

LATENCY_MS = 50
#: what a user would set: threads enough to overlap the vendor's latency with the store's work and a
#: batch per Collections call (200) — or one thread per process, small batches: the latency-bound case
SETTINGS = {
    "threads": {"concurrency": 4, "batch_size": 200, "poll_interval_seconds": 0.05, "lease_seconds": 60},
    "one_thread": {"concurrency": 1, "batch_size": 50, "poll_interval_seconds": 0.05, "lease_seconds": 60},
}


@contextmanager
def fresh_database(tag: str) -> Iterator[str]:
    """A new database on the benchmark's PostgreSQL server; dropped afterwards."""
    name = f"crmsync_scale_{tag}_{int(time.time())}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield PG_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def enqueue_backlog(store: Store, prefix: str, entries: int, contracts: list[str]) -> None:
    queue = ChangeQueue(store)
    for start in range(0, entries, 1000):
        queue.enqueue(
            [
                NewChange(
                    source="service_app",
                    flow="usage",
                    record_key=f"{prefix}{i}",
                    operation="upsert",
                    fields={"contract_id": contracts[i % len(contracts)], "product": "M", "quantity": 2},
                )
                for i in range(start, min(entries, start + 1000))
            ]
        )


def drain(
    sf: SalesforceEmulator, env: dict[str, str], workers: int, entries: int, settings: dict[str, Any]
) -> dict[str, Any]:
    """Queue ``entries`` changes, then let ``workers`` processes drain them; figures and checks."""
    prefix = f"scale{workers}-{time.monotonic_ns()}-"
    contracts = [c["Id"] for c in sf.records("Contract") if c.get("Status") == "Activated"]
    directory = Path(tempfile.mkdtemp(prefix="crmsync-bench-scale-"))
    with fresh_database(str(workers)) as url:
        config = recipe_config(directory, env, url, **settings)
        subprocess.run(
            [sys.executable, "-m", "crmsync", "db", "upgrade", "-c", str(config)],
            check=True,
            capture_output=True,
            cwd=directory,
        )
        store = Store(url)
        enqueue_backlog(store, prefix, entries, contracts)
        queue = ChangeQueue(store)
        calls_before = sf.calls.total
        started = time.perf_counter()
        procs = []
        for i in range(workers):
            with (directory / f"worker-{i}.log").open("wb") as out:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "crmsync", "worker", "-c", str(config), "--no-scheduler"],
                        cwd=directory,
                        stdout=subprocess.DEVNULL,
                        stderr=out,
                    )
                )
        try:

            def drained() -> bool:
                s = queue.stats()
                if any(p.poll() is not None for p in procs):
                    raise RuntimeError(f"a worker exited; see {directory}")
                return s.pending == 0 and s.leased == 0 and s.retrying == 0

            wait_for(drained, 900, f"{entries} changes drained by {workers} worker(s)")
            elapsed = time.perf_counter() - started
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                p.wait(60)
        with store.read() as conn:
            first, last = conn.execute(
                sa.select(sa.func.min(sync_log.c.at), sa.func.max(sync_log.c.at)).where(
                    sync_log.c.outcome == "applied"
                )
            ).one()
            dead = queue.stats().dead
        store.dispose()
    # the journal names each write's record: by record id, then by its external id
    external = {r["Id"]: str(r.get("Ad_Id__c")) for r in sf.records("Usage__c", include_deleted=True)}
    writes = collections.Counter(
        key
        for c in sf.changes("Usage__c", client="crmsync")
        if (key := external.get(c["id"], "")).startswith(prefix)
    )
    landed = {
        r["Ad_Id__c"] for r in sf.records("Usage__c") if str(r.get("Ad_Id__c") or "").startswith(prefix)
    }
    applying = (last - first).total_seconds() if first and last else float("nan")
    return {
        "workers": workers,
        "entries": entries,
        "seconds_including_worker_start": round(elapsed, 2),
        "entries_per_s": round(entries / elapsed, 1),
        "seconds_first_to_last_applied": round(applying, 2),
        "entries_per_s_applying": round(entries / applying, 1) if applying else None,
        "salesforce_calls": sf.calls.total - calls_before,
        "landed": len(landed),
        "written_more_than_once": sum(1 for n in writes.values() if n > 1),
        "never_written": entries - len(writes),
        "dead_letters": dead,
    }


def run(quick: bool = False, entries: int = 20_000) -> dict[str, Any]:
    """Both settings: the default of a process with threads, and one thread per process."""
    return {name: scale(quick, entries, settings) for name, settings in SETTINGS.items()}


def scale(quick: bool, entries: int, settings: dict[str, Any]) -> dict[str, Any]:
    entries = 4_000 if quick else entries
    directory = Path(tempfile.mkdtemp(prefix="crmsync-bench-scale-keys-"))
    sf = SalesforceEmulator(materials=ensure_materials(directory), daily_api_limit=10**9)
    sf.seed("billing")
    sf.faults.add(path="^/services/data", latency_ms=LATENCY_MS)
    runs = []
    with serve(sf, materials=ensure_materials(directory)):
        env = sf.credentials()
        for workers in (1, 2, 4):
            runs.append(drain(sf, env, workers, entries, settings))
            print(f"   {workers} worker(s), {settings}: {runs[-1]['entries_per_s']} entries/s", flush=True)
    one = runs[0]["entries_per_s"]
    return {
        "entries": entries,
        "latency_ms_per_call": LATENCY_MS,
        "settings": settings,
        "cpus": len(os.sched_getaffinity(0)),
        "runs": runs,
        "speedup_4_over_1": round(runs[2]["entries_per_s"] / one, 2),
        "speedup_2_over_1": round(runs[1]["entries_per_s"] / one, 2),
    }


def section(scale: dict[str, Any]) -> list[str]:
    """The scale-out table of docs/performance.md."""
    first = next(iter(scale.values()))
    out = [
        f"### Scale-out: a {first['entries']:,}-change backlog on PostgreSQL, Salesforce adding "
        f"{first['latency_ms_per_call']} ms per call (target: 4 workers at least 3 times one)",
        "",
        f"`python -m bench --only scale`, on {first['cpus']} CPUs shared by the workers, PostgreSQL and the "
        "sandbox. Written twice: by the Salesforce org's write journal.",
        "",
        "| settings | worker processes | seconds (with start) | entries/s | speed-up | entries/s "
        "first→last applied | Salesforce calls | written twice | never written | dead letters |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in scale.values():
        cfg = s["settings"]
        label = f"{cfg['concurrency']} thread(s), batches of {cfg['batch_size']}"
        one = s["runs"][0]["entries_per_s"]
        for x in s["runs"]:
            out.append(
                f"| {label} | {x['workers']} | {x['seconds_including_worker_start']} | {x['entries_per_s']} "
                f"| {x['entries_per_s'] / one:.2f} | {x['entries_per_s_applying']} | {x['salesforce_calls']} "
                f"| {x['written_more_than_once']} | {x['never_written']} | {x['dead_letters']} |"
            )
    return [*out, ""]
