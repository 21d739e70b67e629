"""End to end: an entry submitted to the ingest API until its effect in the Salesforce sandbox."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from bench.common import crmsync, crmsync_process, open_loop, recipe_config, sandbox, summary_ms, wait_for
from crmsync.store import schema


def run(quick: bool = False, rate: float = 50.0) -> dict[str, Any]:
    """The same stream with a short worker poll interval (latency first) and the default (fewer calls)."""
    return {
        "poll_0.02s": measure(quick, rate, poll=0.02),
        "poll_0.2s_default": measure(quick, rate, poll=0.2),
    }


def measure(quick: bool, rate: float, poll: float) -> dict[str, Any]:
    seconds = 10.0 if quick else 20.0
    with sandbox("demo") as box:
        directory = Path(tempfile.mkdtemp(prefix="crmsync-bench-e2e-"))
        db = directory / "crmsync.db"
        config = recipe_config(
            directory, box.env, f"sqlite:///{db}", concurrency=2, batch_size=200, poll_interval_seconds=poll
        )
        crmsync("db", "upgrade", "-c", str(config))
        token = crmsync("token", "create", "bench", "-c", str(config)).strip()
        contracts = box.info["contracts"]
        headers = {"Authorization": f"Bearer {token}"}
        sent: dict[int, float] = {}

        async def request(client: httpx.AsyncClient, i: int) -> httpx.Response:
            body = {
                "key": f"e-{i}",
                "fields": {"contract_id": contracts[i % len(contracts)], "product": "S", "quantity": 1},
            }
            return await client.post("/api/v1/flows/usage/records", json=body, headers=headers)

        sf_url = box.info["urls"]["salesforce"]
        calls_before = httpx.get(f"{sf_url}/_sandbox/calls", verify=box.tls).json()["total"]
        with crmsync_process("run", config) as (_, port):
            load = open_loop(f"http://127.0.0.1:{port}", request, rate=rate, seconds=seconds, sent=sent)
            engine = sa.create_engine(f"sqlite:///{db}")

            def applied() -> dict[str, float]:
                with engine.connect() as conn:
                    rows = conn.execute(
                        sa.select(schema.sync_log.c.record_key, schema.sync_log.c.at).where(
                            schema.sync_log.c.outcome == "applied"
                        )
                    ).all()
                return {r.record_key: r.at.timestamp() for r in rows}

            wait_for(lambda: len(applied()) >= load.requests - load.errors, 120, "every entry applied")
            done = applied()
            engine.dispose()
        calls = httpx.get(f"{sf_url}/_sandbox/calls", verify=box.tls).json()["total"] - calls_before
    latencies = [done[f"e-{i}"] - t for i, t in sent.items() if f"e-{i}" in done]
    return {
        "rate_entries_per_s": rate,
        "worker_poll_interval_s": poll,
        "entries": len(latencies),
        "ingest_errors": load.errors,
        "ingest_to_salesforce": summary_ms(latencies),
        "salesforce_calls": calls,
        "salesforce_calls_per_entry": round(calls / max(1, len(latencies)), 3),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
