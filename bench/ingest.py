"""Ingest: accepted entries/s and latency, crmsync (SQLite, PostgreSQL) beside a bare 202 endpoint.

Each store is measured twice in the same run: with group commit (the default: concurrent requests
share a transaction) and with ``web.group_commit: false`` (one transaction per request, the previous
path). Under saturation (many more concurrent senders than the server keeps up with) the latency of
the requests accepted is reported beside how many were answered 503 (backpressure).
"""

from __future__ import annotations

import contextlib
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
def bare_endpoint() -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.bare", str(port)], cwd=ROOT)
    try:
        wait_for(lambda: _up(port), 30, "bare endpoint")
        yield port
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


#: concurrent senders for the saturation measurement
SATURATION = 256


def measure(
    url: str, token: str, contracts: list[str], quick: bool, *, saturate: bool = False
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
        result: dict[str, Any] = {
            "single_records": wrk.run(url, token, contracts[0], seconds=int(seconds)),
            "batches_of_100": wrk.run(
                url, token, contracts[0], batch=100, seconds=int(seconds), connections=4
            ),
        }
        paced = open_loop(url, single("p"), rate=200, seconds=seconds * 2)
        result["at_200_entries_per_s"] = {**_rates(paced, 1), **summary_ms(paced.latencies)}
        if saturate:
            result["saturated"] = _saturated(url, single("x"), seconds)
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
    with bare_endpoint() as port:
        results["bare_asgi_202"] = measure(f"http://127.0.0.1:{port}", "none", ["x"], quick)
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
                with crmsync_process("serve", config) as (_, port):
                    results[f"crmsync_{backend}{name}"] = measure(
                        f"http://127.0.0.1:{port}", token, box.info["contracts"], quick, saturate=not name
                    )
    for backend in ("sqlite", "postgresql"):
        bare = results["bare_asgi_202"]["single_records"]["entries_per_s"]
        for name in ("", "_per_request"):
            x = results[f"crmsync_{backend}{name}"]["single_records"]
            x["share_of_bare"] = round(x["entries_per_s"] / bare, 3) if bare else None
    return results
