"""Closed-loop throughput with wrk (Debian's ``wrk``), when it is installed: a load generator in C
whose ceiling is far above the Python one's, so that the server, not the client, is measured."""

from __future__ import annotations

import json
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


#: appended to SCRIPT for :func:`saturated`: each thread times its one connection's requests and keeps
#: the latencies of those answered 2xx (wrk's own distribution counts every answer, the 503s too)
ACCEPTED = r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock, bench_timespec *tp);
]]
local clock = ffi.new("bench_timespec")
local function now()
  ffi.C.clock_gettime(1, clock)  -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) + tonumber(clock.tv_nsec) * 1e-9
end
local threads = {}
function setup(thread) table.insert(threads, thread) end
local sent_at = 0
accepted = {}
statuses = {}
local build = request
request = function()
  sent_at = now()
  return build()
end
response = function(status, headers, body)
  if status >= 200 and status < 300 then accepted[#accepted + 1] = now() - sent_at end
  statuses[status] = (statuses[status] or 0) + 1
end
done = function(summary, latency, requests)
  local all, counts = {}, {}
  for _, t in ipairs(threads) do
    for _, v in ipairs(t:get("accepted")) do all[#all + 1] = v end
    for k, v in pairs(t:get("statuses")) do counts[k] = (counts[k] or 0) + v end
  end
  table.sort(all)
  local function at(q) return #all > 0 and all[math.min(#all, math.floor(#all * q) + 1)] * 1000 or -1 end
  local parts = {}
  for k, v in pairs(counts) do parts[#parts + 1] = string.format('"%d":%d', k, v) end
  local line = 'ACCEPTED {"accepted":%d,"p50_ms":%.2f,"p99_ms":%.2f,"max_ms":%.2f,"statuses":{%s}}\n'
  io.write(string.format(line, #all, at(0.5), at(0.99), at(1.0), table.concat(parts, ",")))
end
"""


#: appended to SCRIPT for :func:`paced`: each thread sends on its one connection at a fixed pace
#: (``BENCH_INTERVAL`` seconds apart, threads spread over the interval) and times each request from
#: when it was due, not when it went out: a slow answer delays the next send but its wait is counted
#: (no coordinated omission, as wrk2 does)
PACED = r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock, bench_timespec *tp);
]]
local clock = ffi.new("bench_timespec")
local function now()
  ffi.C.clock_gettime(1, clock)  -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) + tonumber(clock.tv_nsec) * 1e-9
end
local threads = {}
local count = 0
function setup(thread)
  count = count + 1
  thread:set("index", count)
  table.insert(threads, thread)
end
local interval = tonumber(os.getenv("BENCH_INTERVAL"))
local due = nil
latencies = {}
statuses = {}
local build = request
request = function()
  if due == nil then due = now() + interval * (index or 1) / (os.getenv("BENCH_CONNECTIONS") + 0) end
  return build()
end
delay = function()
  if due == nil then due = now() + interval * (index or 1) / (os.getenv("BENCH_CONNECTIONS") + 0) end
  return math.max(0, (due - now()) * 1000)
end
response = function(status, headers, body)
  latencies[#latencies + 1] = now() - due
  statuses[status] = (statuses[status] or 0) + 1
  due = due + interval
end
done = function(summary, latency, requests)
  local all, counts = {}, {}
  for _, t in ipairs(threads) do
    for _, v in ipairs(t:get("latencies")) do all[#all + 1] = v end
    for k, v in pairs(t:get("statuses")) do counts[k] = (counts[k] or 0) + v end
  end
  table.sort(all)
  local function at(q) return #all > 0 and all[math.min(#all, math.floor(#all * q) + 1)] * 1000 or -1 end
  local parts = {}
  for k, v in pairs(counts) do parts[#parts + 1] = string.format('"%d":%d', k, v) end
  local line = 'PACED {"answered":%d,"p50_ms":%.2f,"p99_ms":%.2f,"max_ms":%.2f,"statuses":{%s}}\n'
  io.write(string.format(line, #all, at(0.5), at(0.99), at(1.0), table.concat(parts, ",")))
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


def saturated(url: str, token: str, contract: str, *, connections: int, seconds: int = 5) -> dict[str, Any]:
    """Single records from ``connections`` senders at once (one wrk thread each, so that each request
    is timed from its sending to its answer): the rate and latency of the requests accepted (2xx),
    beside how many were refused (503: backpressure)."""
    script = Path(tempfile.mkdtemp()) / "saturate.lua"
    script.write_text(SCRIPT + ACCEPTED)
    env = {**os.environ, "BENCH_TOKEN": token, "BENCH_CONTRACT": contract, "BENCH_PREFIX": "sat"}
    out = subprocess.run(
        ["wrk", f"-t{connections}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, env=env, check=True,
    ).stdout  # fmt: skip
    found = json.loads(re.search(r"^ACCEPTED (.*)$", out, re.M).group(1))  # type: ignore[union-attr]
    elapsed = re.search(r"requests in ([\d.]+)(ms|s|m)", out)
    duration = (
        float(elapsed.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[elapsed.group(2)] if elapsed else seconds
    )
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    statuses = {str(k): v for k, v in sorted(found["statuses"].items())}
    return {
        "generator": f"wrk, {connections} connections, one thread each; latency of the 2xx answers",
        "requests": sum(statuses.values()),
        "statuses": statuses,
        "answered_503": statuses.get("503", 0),
        "accepted_per_s": round(found["accepted"] / duration, 1),
        "accepted_p50_ms": found["p50_ms"],
        "accepted_p99_ms": found["p99_ms"],
        "accepted_max_ms": found["max_ms"],
        "all_answers_p99_ms": _ms(latency["99"]),
    }


def paced(
    url: str, token: str, contract: str, *, rate: float, seconds: int = 10, connections: int = 20
) -> dict[str, Any]:
    """Single records at a fixed ``rate`` over ``connections`` (one wrk thread each), each timed from
    when it was due: the latency an application sending at that rate sees."""
    script = Path(tempfile.mkdtemp()) / "paced.lua"
    script.write_text(SCRIPT + PACED)
    env = {
        **os.environ,
        "BENCH_TOKEN": token,
        "BENCH_CONTRACT": contract,
        "BENCH_PREFIX": "paced",
        "BENCH_INTERVAL": str(connections / rate),
        "BENCH_CONNECTIONS": str(connections),
    }
    out = subprocess.run(
        ["wrk", f"-t{connections}", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
        capture_output=True, text=True, env=env, check=True,
    ).stdout  # fmt: skip
    found = json.loads(re.search(r"^PACED (.*)$", out, re.M).group(1))  # type: ignore[union-attr]
    statuses = {str(k): v for k, v in sorted(found["statuses"].items())}
    ok = sum(v for k, v in statuses.items() if k.startswith("2"))
    return {
        "generator": f"wrk, {rate:g}/s over {connections} connections, timed from when each was due",
        "requests": found["answered"],
        "statuses": statuses,
        "non_2xx": found["answered"] - ok,
        "entries_per_s": round(ok / seconds, 1),
        "p50_ms": found["p50_ms"],
        "p99_ms": found["p99_ms"],
        "max_ms": found["max_ms"],
    }
