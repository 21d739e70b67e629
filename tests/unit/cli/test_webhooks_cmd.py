"""``crmsync webhooks ensure | list`` against the monday emulator, with a tiny receiver answering
monday's challenge (the real receiver route belongs to the web app)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import typer
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from typer.testing import CliRunner

from crmsync.cli import webhooks as webhooks_cmd
from crmsync.config.loader import load_config
from crmsync.connectors.monday.subscriptions import NEEDED_EVENTS
from crmsync.sandbox.monday import MondayEmulator
from crmsync.sandbox.runner import serve
from crmsync.sandbox.server import BackgroundServer
from crmsync.store import webhooks as receivers
from crmsync.store.db import Store
from crmsync.store.schema import api_budget


async def receive(request: Request) -> Response:
    body = await request.json()
    return JSONResponse({"challenge": body["challenge"]} if "challenge" in body else {"ok": True})


def receiver_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/webhooks/monday/{connection}", receive, methods=["POST"]),
            Route("/webhooks/monday/{connection}/{secret}", receive, methods=["POST"]),
        ]
    )


@pytest.fixture
def receiver() -> Iterator[BackgroundServer]:
    server = BackgroundServer(receiver_app()).start()
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


def write_config(path: Path, emu: MondayEmulator, boards: list[str], *, app: bool = False) -> Path:
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
    if app:
        config["connections"]["crm"] |= {  # type: ignore[index]
            "app_token": env["MONDAY_APP_TOKEN"],
            "signing_secret": env["MONDAY_SIGNING_SECRET"],
        }
    path.write_text(yaml.safe_dump(config))
    return path


def url_secret(config: Path) -> str:
    store = Store(f"sqlite:///{config.parent / 'crmsync.db'}")
    try:
        return receivers.receiver(store, "crm").url_secret
    finally:
        store.dispose()


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
        assert {h["url"] for h in hooks} == {f"{receiver.url}/webhooks/monday/crm/{url_secret(config)}"}
        assert not any(h["app"] for h in hooks)  # a personal token's: unsigned, a secret in the URL
    assert len(url_secret(config)) >= 43

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


def test_with_an_app_token_the_webhooks_are_the_app_s_on_the_signed_route(
    tmp_path: Path, app: typer.Typer, emu: MondayEmulator, receiver: BackgroundServer
) -> None:
    leads = emu.board_id("Leads")
    config = write_config(tmp_path / "crmsync.yaml", emu, [leads], app=True)
    result = CliRunner().invoke(app, ["webhooks", "ensure", "-c", str(config), "--url", receiver.url])
    assert result.exit_code == 0, result.output
    assert "signed by monday" in result.output
    hooks = emu.webhooks(leads)
    assert {h["url"] for h in hooks} == {f"{receiver.url}/webhooks/monday/crm"}
    assert all(h["app"] for h in hooks)


def test_an_unreachable_receiver_fails_saying_how_to_make_it_reachable(
    tmp_path: Path, app: typer.Typer, emu: MondayEmulator
) -> None:
    config = write_config(tmp_path / "crmsync.yaml", emu, [emu.board_id("Leads")])
    result = CliRunner().invoke(app, ["webhooks", "ensure", "-c", str(config), "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "Failed to communicate with URL provided" in result.output
    assert "crmsync run" in result.output and "--url" in result.output
    assert emu.webhooks() == []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_ensure_succeeds_once_the_receiver_is_up_after_a_failed_attempt(
    tmp_path: Path, app: typer.Typer, emu: MondayEmulator
) -> None:
    """A new run is a new request: monday's cached reply to the failed one is not replayed."""
    leads = emu.board_id("Leads")
    config = write_config(tmp_path / "crmsync.yaml", emu, [leads])
    port = free_port()
    args = ["webhooks", "ensure", "-c", str(config), "--url", f"http://127.0.0.1:{port}"]
    runner = CliRunner()
    failed = runner.invoke(app, args)
    assert failed.exit_code == 1 and "crmsync run" in failed.output
    server = BackgroundServer(receiver_app(), "127.0.0.1", port).start()
    try:
        again = runner.invoke(app, args)
    finally:
        server.stop()
    assert again.exit_code == 0, again.output
    assert sorted(h["event"] for h in emu.webhooks(leads)) == sorted(NEEDED_EVENTS)


def test_without_url_the_web_section_s_address_is_used(tmp_path: Path, emu: MondayEmulator) -> None:
    config = load_config(write_config(tmp_path / "crmsync.yaml", emu, ["Leads"]))
    assert webhooks_cmd.default_base_url(config) == "http://127.0.0.1:8080"


def test_no_monday_flow_means_nothing_to_do(tmp_path: Path, app: typer.Typer) -> None:
    config = tmp_path / "crmsync.yaml"
    config.write_text(yaml.safe_dump({"connections": {"app": {"type": "app"}}}))
    result = CliRunner().invoke(app, ["webhooks", "ensure", "-c", str(config), "--url", "http://x"])
    assert result.exit_code == 0 and "nothing to do" in result.output


def test_ensure_counts_its_calls_in_the_budget_every_process_shares(
    tmp_path: Path, app: typer.Typer, emu: MondayEmulator, receiver: BackgroundServer
) -> None:
    config = write_config(tmp_path / "crmsync.yaml", emu, [emu.board_id("Leads")])
    made = CliRunner().invoke(app, ["webhooks", "ensure", "-c", str(config), "--url", receiver.url])
    assert made.exit_code == 0, made.output
    store = Store(f"sqlite:///{config.parent / 'crmsync.db'}")
    try:
        with store.read() as conn:
            counted = conn.execute(
                sa.select(sa.func.sum(api_budget.c.used)).where(api_budget.c.connection.startswith("crm"))
            ).scalar()
    finally:
        store.dispose()
    assert counted, "the complexity of the calls is not in the store's api_budget"
