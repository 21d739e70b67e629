"""``crmsync webhooks ensure|list`` for a Trello board, run as the command line runs it (a process of
its own) against the Trello sandbox: refused with what to do while crmsync is not serving the
callback URL, then one board webhook created, found again (never a duplicate) and listed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from crmsync.config import load_config
from crmsync.engine.runtime import Runtime
from crmsync.sandbox.runner import serve
from crmsync.sandbox.trello import TrelloEmulator
from crmsync.service.process import Process
from crmsync.store.db import Store

from ..conftest import wait_until

CONFIG = """\
version: 1
store:
  url: sqlite:///{store}
connections:
  trello:
    type: trello
    api_url: ${{TRELLO_API_URL}}
    key: ${{TRELLO_KEY}}
    token: ${{TRELLO_TOKEN}}
    app_secret: ${{TRELLO_SECRET}}
    board: Delivery
  reporting:
    type: sql
    url: sqlite:///{reports}
flows:
  board:
    source: trello
    source_object: Card
    target: reporting
    object: card
    key: id
    initial_sync: false
    fields:
      - {{source: name, target: name}}
"""


@pytest.fixture
def trello() -> Iterator[TrelloEmulator]:
    emulator = TrelloEmulator()
    emulator.seed("demo")
    with serve(emulator):
        yield emulator


@pytest.fixture
def config(tmp_path: Path, trello: TrelloEmulator) -> Path:
    path = tmp_path / "crmsync.yaml"
    path.write_text(CONFIG.format(store=tmp_path / "crmsync.db", reports=tmp_path / "reports.db"))
    return path


def crmsync(config: Path, trello: TrelloEmulator, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **trello.credentials(), "COLUMNS": "250"}
    return subprocess.run(
        [sys.executable, "-m", "crmsync", "webhooks", *args, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@pytest.fixture
def serving(config: Path, trello: TrelloEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """crmsync's web app (the webhook route alone), on a free port; its base URL."""
    for key, value in trello.credentials().items():
        monkeypatch.setenv(key, value)
    cfg = load_config(config)
    runtime = Runtime(cfg, store=Store(cfg.store.url), upgrade=True)
    proc = Process(runtime, web=True, workers=0, host="127.0.0.1", port=0)
    proc.bind()
    thread = threading.Thread(target=proc.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{proc.bound_port}"

    def up() -> bool:
        try:
            return httpx.head(f"{base}/webhooks/trello").status_code == 200
        except httpx.TransportError:
            return False

    wait_until(up, timeout=20)
    yield base
    proc.stop()
    thread.join(10)
    runtime.close()


def test_ensure_refuses_while_crmsync_is_down_then_creates_once_and_lists(
    config: Path, trello: TrelloEmulator, serving: str
) -> None:
    down = f"http://127.0.0.1:{_closed_port()}"  # a port nothing listens on
    refused = crmsync(config, trello, "ensure", "--url", down)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "trello refused" in refused.stderr and f"trello could not reach {down}" in refused.stderr
    assert "Traceback" not in refused.stderr and trello.webhook_list() == []

    made = crmsync(config, trello, "ensure", "--url", serving)
    assert made.returncode == 0, made.stdout + made.stderr
    [hook] = trello.webhook_list()
    assert hook["callbackURL"] == f"{serving}/webhooks/trello"
    assert hook["idModel"] == trello.board_id("Delivery") and hook["active"] is True
    assert hook["id"] in made.stdout and "created" in made.stdout

    again = crmsync(config, trello, "ensure", "--url", serving)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "present" in again.stdout and "created" not in again.stdout
    assert [h["id"] for h in trello.webhook_list()] == [hook["id"]]

    listed = crmsync(config, trello, "list")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert hook["id"] in listed.stdout and trello.board_id("Delivery") in listed.stdout


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
