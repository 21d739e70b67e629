"""What the benchmarks share: processes to start, a load generator, percentiles."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "examples" / "usage-billing" / "crmsync.yaml"
PG_URL = os.environ.get("CRMSYNC_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(condition: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not reached within {timeout} s")
        time.sleep(0.05)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(latencies: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2) if latencies else float("nan"),
    }


@dataclass
class Sandbox:
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    info: dict[str, Any]
    directory: Path

    @property
    def tls(self) -> ssl.SSLContext:
        """Verifies the sandbox's Salesforce certificate."""
        return ssl.create_default_context(cafile=self.env["SALESFORCE_CA_FILE"])


@contextlib.contextmanager
def sandbox(seed: str = "billing") -> Iterator[Sandbox]:
    """The three emulators in their own process, API rate limits lifted so they do not cap a benchmark."""
    directory = Path(tempfile.mkdtemp(prefix="crmsync-bench-sandbox-"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.sandbox_server", str(directory), seed],
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    ready = directory / "ready.json"
    try:
        wait_for(lambda: ready.exists() or proc.poll() is not None, 60, "sandbox start")
        if proc.poll() is not None:
            raise RuntimeError(f"sandbox failed: {proc.stderr.read().decode() if proc.stderr else ''}")
        info = json.loads(ready.read_text())
        box = Sandbox(proc, info["env"], info, directory)
        yield box
    finally:
        proc.terminate()
        proc.wait(30)


def recipe_config(
    directory: Path, env: dict[str, str], store_url: str, *, web: dict[str, Any] | None = None, **worker: Any
) -> Path:
    """The usage-billing recipe with the sandbox's credentials and the given store (and web settings)."""
    text = RECIPE.read_text().replace("sqlite:///crmsync.db", store_url)
    if web:
        text = text.replace("web:\n", "web:\n" + "".join(f"  {k}: {v}\n" for k, v in web.items()), 1)
    if worker:
        block = "worker:\n" + "".join(f"  {k}: {v}\n" for k, v in worker.items())
        text = text.replace("worker:\n  concurrency: 2\n  batch_size: 200\n", block)
    path = directory / "crmsync.yaml"
    path.write_text(text)
    (directory / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return path


def crmsync(*args: str, cwd: Path | None = None) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "crmsync", *args], check=True, capture_output=True, cwd=cwd or ROOT
    )
    return out.stdout.decode()


@contextlib.contextmanager
def crmsync_process(command: str, config: Path, *extra: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    args = [sys.executable, "-m", "crmsync", command, "-c", str(config)]
    if command in ("run", "serve"):
        args += ["--port", str(port)]
    proc = subprocess.Popen([*args, *extra], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if command in ("run", "serve"):
            wait_for(lambda: _answers(port) or proc.poll() is not None, 60, f"crmsync {command}")
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "crmsync exited")
        yield proc, port
    finally:
        proc.terminate()
        proc.wait(60)


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    #: latencies of the requests answered 2xx only
    ok_latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0


Request = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


async def _closed_loop(
    url: str, request: Request, concurrency: int, seconds: float, verify: bool | ssl.SSLContext
) -> LoadResult:
    result = LoadResult()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30, verify=verify) as client:
        counter = iter(range(10**9))
        start = time.perf_counter()
        stop_at = start + seconds

        async def one_user() -> None:
            while time.perf_counter() < stop_at:
                i = next(counter)
                t0 = time.perf_counter()
                ok = False
                try:
                    response = await request(client, i)
                    result.statuses[response.status_code] = result.statuses.get(response.status_code, 0) + 1
                    ok = response.status_code < 300
                    if not ok:
                        result.errors += 1
                except httpx.HTTPError:
                    result.errors += 1
                result.latencies.append(time.perf_counter() - t0)
                if ok:
                    result.ok_latencies.append(result.latencies[-1])
                result.requests += 1

        await asyncio.gather(*(one_user() for _ in range(concurrency)))
        result.seconds = time.perf_counter() - start
    return result


def closed_loop(
    url: str,
    request: Request,
    *,
    concurrency: int = 16,
    seconds: float = 5.0,
    verify: bool | ssl.SSLContext = True,
) -> LoadResult:
    """As many requests as ``concurrency`` users can send back to back for ``seconds``."""
    return asyncio.run(_closed_loop(url, request, concurrency, seconds, verify))


async def _open_loop(
    url: str, request: Request, rate: float, seconds: float, sent: dict[int, float]
) -> LoadResult:
    result = LoadResult()
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        start = time.perf_counter()
        tasks = []

        async def fire(i: int) -> None:
            t0 = time.perf_counter()
            sent[i] = time.time()
            try:
                response = await request(client, i)
                result.statuses[response.status_code] = result.statuses.get(response.status_code, 0) + 1
                if response.status_code >= 300:
                    result.errors += 1
            except httpx.HTTPError:
                result.errors += 1
            result.latencies.append(time.perf_counter() - t0)
            result.requests += 1

        total = int(rate * seconds)
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(fire(i)))
        await asyncio.gather(*tasks)
        result.seconds = time.perf_counter() - start
    return result


def open_loop(
    url: str, request: Request, *, rate: float, seconds: float, sent: dict[int, float] | None = None
) -> LoadResult:
    """Requests at a fixed ``rate`` whatever the answers' latency (no coordinated omission)."""
    return asyncio.run(_open_loop(url, request, rate, seconds, sent if sent is not None else {}))
