"""The sandbox must never be the bottleneck: simple requests/s per emulator, memory for 100k records."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx

from bench.common import ROOT, closed_loop, sandbox, summary_ms


def run(quick: bool = False) -> dict[str, Any]:
    seconds = 3.0 if quick else 5.0
    results: dict[str, Any] = {}
    with sandbox("demo") as box:
        env, urls = box.env, box.info["urls"]
        ca = box.tls
        token = httpx.post(
            f"{env['SALESFORCE_LOGIN_URL']}/services/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": env["SALESFORCE_CLIENT_ID"],
                "client_secret": env["SALESFORCE_CLIENT_SECRET"],
            },
            verify=ca,
        ).json()["access_token"]
        contract = box.info["contracts"][0]

        async def salesforce(client: httpx.AsyncClient, i: int) -> httpx.Response:
            return await client.get(
                f"/services/data/v66.0/sobjects/Contract/{contract}",
                headers={"Authorization": f"Bearer {token}"},
            )

        async def trello(client: httpx.AsyncClient, i: int) -> httpx.Response:
            return await client.get(
                f"/1/boards/{box.info['trello_board']}",
                params={"key": env["TRELLO_KEY"], "token": env["TRELLO_TOKEN"]},
            )

        async def monday(client: httpx.AsyncClient, i: int) -> httpx.Response:
            query = {"query": f"query {{ boards(ids: [{box.info['monday_board']}]) {{ id name }} }}"}
            return await client.post("/v2", json=query, headers={"Authorization": env["MONDAY_TOKEN"]})

        for name, request in (("salesforce", salesforce), ("trello", trello), ("monday", monday)):
            r = closed_loop(urls[name], request, concurrency=8, seconds=seconds, verify=ca)
            results[name] = {
                "requests_per_s": round((r.requests - r.errors) / r.seconds, 1),
                "errors": r.errors,
                "statuses": {str(k): v for k, v in r.statuses.items()},
                **summary_ms(r.latencies),
            }
    memory = subprocess.run(
        [sys.executable, "-m", "bench.sf_memory", "100000"], cwd=ROOT, check=True, capture_output=True
    )
    results["salesforce_100k_records"] = json.loads(memory.stdout)
    return results
