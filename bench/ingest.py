"""Ingest: accepted entries/s and latency, crmsync (SQLite, PostgreSQL) beside a bare 202 endpoint.

Each store is measured twice in the same run: with group commit (the default: concurrent requests
share a transaction, checked by the committer) and with ``web.group_commit: false`` (one thread and
one transaction per request, the previous path). Under saturation (many more concurrent senders
than the server keeps up with) the latency of the requests accepted is reported beside how many
were answered 503 (backpressure), for the bare endpoint too. With wrk installed, every figure is
wrk's: the latency at 200 entries/s too (a fixed pace, each request timed from when it was due).

The machine is shared: the bare endpoint stays up for the whole run and is measured again just
before each crmsync measurement (``bare_same_moment``), and each wrk run reports the CPU time the
server process spent per request (``server_cpu_us_per_request``), which depends far less on what
else the machine runs than a rate does.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from bench import wrk
from bench.common import (
    PG_URL,
    ROOT,
    LoadResult,
    closed_loop,
    crmsync,
    crmsync_process,
    free_port,
    open_loop,
    recipe_config,
    sandbox,
    summary_ms,
    wait_for,
)


@contextlib.contextmanager
def bare_endpoint() -> Iterator[tuple[int, int]]:
    """The bare endpoint's port and process id."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.bare", str(port)], cwd=ROOT)
    try:
        wait_for(lambda: _up(port), 30, "bare endpoint")
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(30)


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def fresh_pg_database(name: str) -> str:
    engine = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return PG_URL.rsplit("/", 1)[0] + "/" + name


#: concurrent senders for the saturation measurement (the Python generator's)
SATURATION = 256
#: concurrent senders for the saturation measurement with wrk: twice the default web.ingest_backlog
WRK_SATURATION = 128


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) the process ``pid`` used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    url: str, token: str, contracts: list[str], quick: bool, *, saturate: bool = False, pid: int | None = None
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    seconds = 3.0 if quick else 6.0

    def single(prefix: str):  # type: ignore[no-untyped-def]
        async def request(client: httpx.AsyncClient, i: int) -> httpx.Response:
            body = {
                "key": f"{prefix}-{i}",
                "fields": {"contract_id": contracts[i % len(contracts)], "product": "S", "quantity": 1},
            }
            return await client.post("/api/v1/flows/usage/records", json=body, headers=headers)

        return request

    def batch(prefix: str, size: int):  # type: ignore[no-untyped-def]
        async def request(client: httpx.AsyncClient, i: int) -> httpx.Response:
            records = [
                {
                    "key": f"{prefix}-{i}-{j}",
                    "fields": {"contract_id": contracts[j % len(contracts)], "product": "S", "quantity": 1},
                }
                for j in range(size)
            ]
            return await client.post(
                "/api/v1/flows/usage/records", json={"records": records}, headers=headers
            )

        return request

    if wrk.available():  # a C load generator: its ceiling is far above what the server can do
        cpu_before = cpu_seconds(pid) if pid else 0.0
        each = wrk.run(url, token, contracts[0], seconds=int(seconds))
        if pid:
            spent = cpu_seconds(pid) - cpu_before
            each["server_cpu_us_per_request"] = round(spent * 1e6 / max(1, each["requests"]), 1)
        result: dict[str, Any] = {
            "single_records": each,
            "batches_of_100": wrk.run(
                url, token, contracts[0], batch=100, seconds=int(seconds), connections=4
            ),
        }
        # wrk, not the Python generator: on a loaded machine the Python one falls behind its own pace
        result["at_200_entries_per_s"] = wrk.paced(
            url, token, contracts[0], rate=200, seconds=int(seconds * 2)
        )
        if saturate:
            result["saturated"] = wrk.saturated(
                url, token, contracts[0], connections=WRK_SATURATION, seconds=int(seconds)
            )
        return result
    singles = closed_loop(url, single("s"), concurrency=16, seconds=seconds)
    batches = closed_loop(url, batch("b", 100), concurrency=4, seconds=seconds)
    paced = open_loop(url, single("p"), rate=200, seconds=seconds * 2)
    out = {
        "single_records": _rates(singles, 1),
        "batches_of_100": _rates(batches, 100),
        "at_200_entries_per_s": {**_rates(paced, 1), **summary_ms(paced.latencies)},
    }
    if saturate:
        out["saturated"] = _saturated(url, single("x"), seconds)
    return out


def _saturated(url: str, request: Any, seconds: float) -> dict[str, Any]:
    """Single records from many concurrent senders: the latency of what was accepted (2xx), and
    how many were refused for backpressure (503)."""
    r = closed_loop(url, request, concurrency=SATURATION, seconds=seconds)
    return {
        **_rates(r, 1),
        **summary_ms(r.ok_latencies),
        "generator": f"python, {SATURATION} senders",
        "non_2xx": r.errors,
        "answered_503": r.statuses.get(503, 0),
    }


def _rates(r: LoadResult, per_request: int) -> dict[str, Any]:
    ok = r.requests - r.errors
    return {
        "requests": r.requests,
        "errors": r.errors,
        "statuses": {str(k): v for k, v in r.statuses.items()},
        "entries_per_s": round(ok * per_request / r.seconds, 1),
        **summary_ms(r.latencies),
    }


def run(quick: bool = False) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with bare_endpoint() as (bare_port, bare_pid):
        bare_url = f"http://127.0.0.1:{bare_port}"
        results["bare_asgi_202"] = measure(bare_url, "none", ["x"], quick, saturate=True, pid=bare_pid)
        with sandbox("demo") as box:
            for backend in ("sqlite", "postgresql"):
                directory = Path(tempfile.mkdtemp(prefix=f"crmsync-bench-{backend}-"))
                store = (
                    f"sqlite:///{directory / 'crmsync.db'}"
                    if backend == "sqlite"
                    else fresh_pg_database("crmsync_bench")
                )
                token = ""
                for name, web in (("", {}), ("_per_request", {"group_commit": "false"})):
                    config = recipe_config(directory, box.env, store, web=web)
                    if not token:
                        crmsync("db", "upgrade", "-c", str(config))
                        token = crmsync("token", "create", "bench", "-c", str(config)).strip()
                    with crmsync_process("serve", config) as (proc, port):
                        # the bare endpoint again, at the same moment (the machine's load changes)
                        same_moment = _bare_now(bare_url, bare_pid, quick)
                        found = measure(
                            f"http://127.0.0.1:{port}",
                            token,
                            box.info["contracts"],
                            quick,
                            saturate=True,
                            pid=proc.pid,
                        )
                        found["single_records"]["bare_same_moment"] = same_moment
                        results[f"crmsync_{backend}{name}"] = found
    bare = results["bare_asgi_202"]["single_records"]
    for backend in ("sqlite", "postgresql"):
        for name in ("", "_per_request"):
            x = results[f"crmsync_{backend}{name}"]["single_records"]
            x["share_of_bare"] = _share(x["entries_per_s"], bare["entries_per_s"])
            adjacent = x.get("bare_same_moment") or {}
            if adjacent.get("entries_per_s"):
                x["share_of_bare_same_moment"] = _share(x["entries_per_s"], adjacent["entries_per_s"])
            bare_cpu = adjacent.get("server_cpu_us_per_request") or bare.get("server_cpu_us_per_request")
            if x.get("server_cpu_us_per_request") and bare_cpu:
                # the bare endpoint's CPU per request (measured just before) over crmsync's: the share
                # of its rate crmsync would reach if each had a core to itself
                x["cpu_share_of_bare"] = _share(bare_cpu, x["server_cpu_us_per_request"])
    return results


def _bare_now(url: str, pid: int, quick: bool) -> dict[str, Any] | None:
    if not wrk.available():
        return None
    before = cpu_seconds(pid)
    found = wrk.run(url, "none", "x", seconds=3 if quick else 6)
    found["server_cpu_us_per_request"] = round(
        (cpu_seconds(pid) - before) * 1e6 / max(1, found["requests"]), 1
    )
    return found


def _share(part: float, whole: float) -> float | None:
    return round(part / whole, 3) if whole else None
