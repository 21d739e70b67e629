"""``crmsync webhooks ensure | list`` against the monday emulator, with a tiny receiver answering
monday's challenge (the real receiver route belongs to the web app)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from typer.testing import CliRunner

from crmsync.cli import webhooks as webhooks_cmd
from crmsync.connectors.monday.subscriptions import NEEDED_EVENTS
from crmsync.sandbox.monday import MondayEmulator
from crmsync.sandbox.runner import serve
from crmsync.sandbox.server import BackgroundServer


async def receive(request: Request) -> Response:
    body = await request.json()
    return JSONResponse({"challenge": body["challenge"]} if "challenge" in body else {"ok": True})


@pytest.fixture
def receiver() -> Iterator[BackgroundServer]:
    app = Starlette(routes=[Route("/webhooks/monday/{connection}", receive, methods=["POST"])])
    server = BackgroundServer(app).start()
    yield server
    server.stop()


@pytest.fixture
def emu() -> Iterator[MondayEmulator]:
    emulator = MondayEmulator(retry_delays=(0.05,))
    emulator.seed("demo")
    with serve(emulator):
        yield emulator


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    webhooks_cmd.register(app)
    return app


def write_config(path: Path, emu: MondayEmulator, boards: list[str]) -> Path:
    env = emu.credentials()
    flows = {
        f"flow{n}": {
            "source": "app",
            "target": "crm",
            "object": board,
            "key": "name",
            "fields": [{"source": "name", "target": "name"}],
        }
        for n, board in enumerate(boards)
    }
    config = {
        "store": {"url": f"sqlite:///{path.parent / 'crmsync.db'}"},
        "connections": {
            "app": {"type": "app"},
            "crm": {"type": "monday", "api_url": env["MONDAY_API_URL"], "token": env["MONDAY_TOKEN"]},
        },
        "flows": flows,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_ensure_twice_creates_each_webhook_once(
    tmp_path: Path, app: typer.Typer, emu: MondayEmulator, receiver: BackgroundServer
) -> None:
    leads, deals = emu.board_id("Leads"), emu.board_id("Deals")
    config = write_config(tmp_path / "crmsync.yaml", emu, [leads, "Deals", leads])  # an id or a name
    runner = CliRunner()
    first = runner.invoke(app, ["webhooks", "ensure", "-c", str(config), "--url", receiver.url])
    assert first.exit_code == 0, first.output
    assert first.output.count("created") == 2 * len(NEEDED_EVENTS)
    for board in (leads, deals):
        hooks = emu.webhooks(board)
        assert sorted(h["event"] for h in hooks) == sorted(NEEDED_EVENTS)
        assert {h["url"] for h in hooks} == {f"{receiver.url}/webhooks/monday/crm"}

    second = runner.invoke(app, ["webhooks", "ensure", "-c", str(config), "--url", receiver.url])
    assert second.exit_code == 0, second.output
    assert "created" not in second.output and second.output.count("present") == 2 * len(NEEDED_EVENTS)
    assert len(emu.webhooks()) == 2 * len(NEEDED_EVENTS)

    listed = runner.invoke(app, ["webhooks", "list", "-c", str(config)])
    assert listed.exit_code == 0, listed.output
    assert all(event in listed.output for event in NEEDED_EVENTS)


def test_ensure_heals_a_deleted_webhook(
    tmp_path: Path, app: typer.Typer, emu: MondayEmulator, receiver: BackgroundServer
) -> None:
    leads = emu.board_id("Leads")
    config = write_config(tmp_path / "crmsync.yaml", emu, [leads])
    runner = CliRunner()
    assert runner.invoke(app, ["webhooks", "ensure", "-c", str(config), "--url", receiver.url]).exit_code == 0
    gone = next(h for h in emu.webhooks(leads) if h["event"] == "item_deleted")
    with emu.lock:
        del emu.store.webhooks[int(gone["id"])]
    healed = runner.invoke(app, ["webhooks", "ensure", "-c", str(config), "--url", receiver.url])
    assert healed.exit_code == 0, healed.output
    assert healed.output.count("created") == 1
    assert sorted(h["event"] for h in emu.webhooks(leads)) == sorted(NEEDED_EVENTS)


def test_an_unreachable_receiver_fails_with_monday_s_message(
    tmp_path: Path, app: typer.Typer, emu: MondayEmulator
) -> None:
    config = write_config(tmp_path / "crmsync.yaml", emu, [emu.board_id("Leads")])
    result = CliRunner().invoke(app, ["webhooks", "ensure", "-c", str(config), "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "Failed to communicate with URL provided" in result.output
    assert emu.webhooks() == []


def test_no_monday_flow_means_nothing_to_do(tmp_path: Path, app: typer.Typer) -> None:
    config = tmp_path / "crmsync.yaml"
    config.write_text(yaml.safe_dump({"connections": {"app": {"type": "app"}}}))
    result = CliRunner().invoke(app, ["webhooks", "ensure", "-c", str(config), "--url", "http://x"])
    assert result.exit_code == 0 and "nothing to do" in result.output
