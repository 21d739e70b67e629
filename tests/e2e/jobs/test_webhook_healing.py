"""webhook-healing against the Trello emulator: a deleted webhook is recreated and what happened on
the board meanwhile is queued (once), an inactive one is re-enabled, failing deliveries alert once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crmsync.config import load_config
from crmsync.engine.runtime import Runtime
from crmsync.sandbox.runner import serve
from crmsync.sandbox.server import BackgroundServer
from crmsync.sandbox.trello import TrelloEmulator
from crmsync.scheduler.scheduler import JobSpec, run_job
from crmsync.store.schema import changes

HEALING = JobSpec(job="webhook-healing", cron="@hourly")


@pytest.fixture
def receiver() -> Iterator[str]:
    """A callback URL that answers Trello's HEAD check (deliveries are not what this test reads)."""

    async def answer(request: Request) -> Response:
        return Response(status_code=200)

    app = Starlette(routes=[Route("/webhooks/{name}", answer, methods=["HEAD", "POST"])])
    with BackgroundServer(app) as server:
        yield server.url


@pytest.fixture
def runtime(tmp_path: Path, receiver: str) -> Iterator[tuple[Runtime, TrelloEmulator]]:
    emu = TrelloEmulator()
    emu.seed("demo")
    with serve(emu):
        env = emu.credentials()
        path = tmp_path / "crmsync.yaml"
        path.write_text(
            f"""\
store: {{url: "sqlite:///{tmp_path / "crmsync.db"}"}}
connections:
  board:
    type: trello
    api_url: "{env["TRELLO_API_URL"]}"
    key: "{env["TRELLO_KEY"]}"
    token: "{env["TRELLO_TOKEN"]}"
    app_secret: "{env["TRELLO_SECRET"]}"
    board: Delivery
  reporting:
    type: sql
    url: "sqlite:///{tmp_path / "reports.db"}"
flows:
  cards:
    source: board
    source_object: Card
    target: reporting
    object: card
    key: id
    initial_sync: false
    fields:
      - {{source: name, target: name}}
      - {{source: list, target: list_name}}
jobs:
  healing:
    job: webhook-healing
    cron: "@hourly"
    args: {{base_url: "{receiver}"}}
"""
        )
        rt = Runtime(load_config(path, environ={}))
        try:
            yield rt, emu
        finally:
            rt.close()


def _heal(rt: Runtime) -> str:
    spec = JobSpec(job="webhook-healing", cron="@hourly", args=dict(rt.config.jobs["healing"].args))
    result = run_job(rt.store, "healing", spec, config=rt.config, runtime=rt)
    assert result.status == "succeeded", result.message
    return str(result.message)


def _queued(rt: Runtime) -> list[str]:
    with rt.store.engine.connect() as conn:
        return [
            str(k) for k in conn.execute(sa.select(changes.c.record_key).order_by(changes.c.id)).scalars()
        ]


def test_a_deleted_webhook_is_recreated_and_the_actions_meanwhile_caught_up(
    runtime: tuple[Runtime, TrelloEmulator],
) -> None:
    rt, emu = runtime
    first = _heal(rt)
    assert "1 webhooks recreated" in first and "0 missed changes queued" in first, first
    [hook] = emu.webhook_list()
    assert _heal(rt).startswith("1 objects on 1 connections: 0 webhooks recreated, 0 re-enabled, 0 failing")

    # the webhook is deleted; meanwhile three cards change on the board
    with emu.lock:
        del emu.state.webhooks[hook["id"]]
    board = emu.board_id("Delivery")
    cards = emu.cards(board)
    emu.move_card(cards[0]["id"], emu.list_id(board, "Done"))
    emu.update_card(cards[1]["id"], name="Renamed while crmsync was away")
    made = emu.create_card(emu.list_id(board, "Backlog"), "Made while crmsync was away")
    summary = _heal(rt)
    assert "1 webhooks recreated" in summary and "3 missed changes queued" in summary, summary
    assert len(emu.webhook_list()) == 1
    assert set(_queued(rt)) == {cards[0]["id"], cards[1]["id"], made["id"]}
    assert "0 missed changes queued" in _heal(rt)  # read once


def test_an_inactive_webhook_is_reenabled_and_failures_alert_once(
    runtime: tuple[Runtime, TrelloEmulator],
) -> None:
    rt, emu = runtime
    _heal(rt)
    [hook] = emu.webhook_list()
    with emu.lock:
        emu.state.webhooks[hook["id"]]["active"] = False
        emu.state.webhooks[hook["id"]]["consecutiveFailures"] = 3
    summary = _heal(rt)
    assert "0 webhooks recreated, 1 re-enabled, 1 failing" in summary, summary
    assert emu.webhook_list()[0]["active"] is True
    assert [p.key for p in rt.alerter.open_problems()] == ["webhook_failures:board"]

    with emu.lock:  # an active webhook that keeps failing: one problem, however many runs
        emu.state.webhooks[hook["id"]]["consecutiveFailures"] = 5
    _heal(rt)
    _heal(rt)
    assert [p.key for p in rt.alerter.open_problems()] == ["webhook_failures:board"]
    with emu.lock:
        emu.state.webhooks[hook["id"]]["consecutiveFailures"] = 0
    _heal(rt)
    assert rt.alerter.open_problems() == []
