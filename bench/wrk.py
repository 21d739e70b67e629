"""Closed-loop throughput with wrk (Debian's ``wrk``), when it is installed: a load generator in C
whose ceiling is far above the Python one's, so that the server, not the client, is measured."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

SCRIPT = r"""
local counter = 0
local token = os.getenv("BENCH_TOKEN")
local contract = os.getenv("BENCH_CONTRACT")
local size = tonumber(os.getenv("BENCH_BATCH") or "1")
local prefix = os.getenv("BENCH_PREFIX") .. tostring(math.random(1, 1000000000))
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token
request = function()
  counter = counter + 1
  local records = {}
  for j = 1, size do
    local fields = string.format('{"contract_id":"%s","product":"S","quantity":1}', contract)
    records[j] = string.format('{"key":"%s-%d-%d","fields":%s}', prefix, counter, j, fields)
  end
  local body = '{"records":[' .. table.concat(records, ",") .. ']}'
  return wrk.format(nil, "/api/v1/flows/usage/records", nil, body)
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run(
    url: str, token: str, contract: str, *, batch: int = 1, seconds: int = 5, connections: int = 16
) -> dict[str, Any]:
    script = Path(tempfile.mkdtemp()) / "ingest.lua"
    script.write_text(SCRIPT)
    env = {
        **os.environ,
        "BENCH_TOKEN": token,
        "BENCH_CONTRACT": contract,
        "BENCH_BATCH": str(batch),
        "BENCH_PREFIX": "wrk",
    }
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, env=env, check=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non_2xx = int(bad.group(1)) if bad else 0
    return {
        "generator": "wrk",
        "requests": requests,
        "non_2xx": non_2xx,
        "socket_errors": errors.group(1) if errors else None,
        "entries_per_s": round(rps * batch * (1 - non_2xx / max(1, requests)), 1),
        "p50_ms": _ms(latency["50"]),
        "p99_ms": _ms(latency["99"]),
    }
