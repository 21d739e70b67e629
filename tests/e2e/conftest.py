"""Fixtures for end-to-end tests: the Salesforce sandbox over HTTPS and crmsync itself."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crmsync.config import load_config
from crmsync.engine.runtime import Runtime
from crmsync.sandbox.runner import serve
from crmsync.sandbox.salesforce import SalesforceEmulator
from crmsync.sandbox.tls import Materials, ensure_materials
from crmsync.service.process import Process
from crmsync.store import tokens
from crmsync.store.db import Store

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "examples" / "usage-billing" / "crmsync.yaml"


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, interval: float = 0.05) -> None:
    """Wait for ``condition`` to hold; fail the test with a clear message after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@pytest.fixture(scope="session")
def materials(tmp_path_factory: pytest.TempPathFactory) -> Materials:
    return ensure_materials(tmp_path_factory.mktemp("sandbox-keys"))


@pytest.fixture
def salesforce(materials: Materials) -> Iterator[SalesforceEmulator]:
    emulator = SalesforceEmulator(materials=materials)
    emulator.seed("billing")
    with serve(emulator, materials=materials):
        yield emulator


@dataclass
class Crmsync:
    runtime: Runtime
    base_url: str
    token: str
    config_path: Path
    process: Process | None

    def settled(self) -> bool:
        stats = self.runtime.queue.stats()
        return stats.pending == 0 and stats.leased == 0 and stats.retrying == 0


def write_config(
    tmp_path: Path,
    salesforce: SalesforceEmulator,
    *,
    urgent: str = "true",
    alerts: str | None = None,
    connection: dict[str, Any] | None = None,
    **worker: Any,
) -> Path:
    """The usage-billing recipe, pointed at the sandbox and a fresh SQLite file; ``connection``
    adds settings to its Salesforce connection (e.g. ``timeout_seconds``)."""
    env = salesforce.credentials()
    text = RECIPE.read_text()
    for key, value in env.items():
        text = text.replace("${" + key + "}", value)
        text = text.replace("${" + key + ":-}", value)
        text = text.replace("${" + key + ":-https://login.salesforce.com}", value)
    text = text.replace("sqlite:///crmsync.db", f"sqlite:///{tmp_path / 'crmsync.db'}")
    settings = {
        "lease_seconds": 5,
        "poll_interval_seconds": 0.05,
        "batch_size": 1000,
        "backoff": "{initial_seconds: 0.05, factor: 2, max_seconds: 0.5, jitter: 0.2}",
        **worker,
    }
    block = "worker:\n" + "".join(f"  {k}: {v}\n" for k, v in settings.items())
    text = text.replace("worker:\n  concurrency: 2\n  batch_size: 200\n", block)
    ca_line = "    ca_file: ${SALESFORCE_CA_FILE:-}\n".replace(
        "${SALESFORCE_CA_FILE:-}", env["SALESFORCE_CA_FILE"]
    )
    assert ca_line in text, "the recipe's Salesforce connection changed: update write_config"
    extra = "".join(f"    {k}: {v}\n" for k, v in (connection or {}).items())
    text = text.replace(ca_line, ca_line + extra)
    text = text.replace("    on_delete: delete\n", f"    on_delete: delete\n    urgent: {urgent}\n")
    # a busy test machine must not turn a lock refusal into "the target was too slow to ask"
    text = text.replace(
        "      when: \"Status = 'Fulfilled'\"\n",
        "      when: \"Status = 'Fulfilled'\"\n      check_timeout_seconds: 30\n",
    )
    if alerts is not None:
        text += f"\nalerts:\n  urls: ['{alerts}']\n"
    path = tmp_path / "crmsync.yaml"
    path.write_text(text)
    shutil.copy(RECIPE, tmp_path / "recipe.yaml")
    return path


@pytest.fixture
def crmsync_factory(tmp_path: Path, salesforce: SalesforceEmulator) -> Iterator[Callable[..., Crmsync]]:
    started: list[tuple[Process | None, Runtime, threading.Thread | None]] = []

    def start(
        *,
        workers: int = 2,
        web: bool = True,
        urgent: str = "true",
        alerts: str | None = None,
        connection: dict[str, Any] | None = None,
        **worker: Any,
    ) -> Crmsync:
        path = write_config(
            tmp_path, salesforce, urgent=urgent, alerts=alerts, connection=connection, **worker
        )
        cfg = load_config(path)
        runtime = Runtime(cfg, store=Store(cfg.store.url), upgrade=True)
        proc = Process(runtime, web=web, workers=workers, host="127.0.0.1", port=0, watchdog_interval=0.3)
        if web:
            proc.bind()
        thread = threading.Thread(target=proc.run, daemon=True)
        thread.start()
        token = tokens.create_token(runtime.store, f"test-{len(started)}")
        started.append((proc, runtime, thread))
        return Crmsync(runtime, f"http://127.0.0.1:{proc.bound_port}", token, path, proc)

    yield start
    for proc, runtime, thread in started:
        if proc is not None:
            proc.stop()
        if thread is not None:
            thread.join(10)
        runtime.close()
