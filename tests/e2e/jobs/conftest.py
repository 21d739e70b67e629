"""A seeded Delivery board (~200 cards) on the Trello emulator, opportunities in an in-memory CRM,
a reporting database (SQLite, or PostgreSQL / MariaDB for a test parametrizing ``board`` with the
kind indirectly), and a crmsync.yaml naming them, for the jobs' end-to-end tests."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.integration.conftest import server_database

from crmsync.config import load_config
from crmsync.config.models import Config
from crmsync.connectors.memory.system import MemorySystem
from crmsync.jobs import registry
from crmsync.sandbox.runner import serve
from crmsync.sandbox.trello import TrelloEmulator
from crmsync.scheduler import runs
from crmsync.scheduler.scheduler import JobSpec, run_job
from crmsync.store.db import Store

CARDS = 200
STAGES = ("Prospecting", "Proposal", "Negotiation/Review", "Closed Won", "Closed Lost")


@dataclass
class Board:
    emulator: TrelloEmulator
    crm: MemorySystem
    config: Config
    store: Store
    board_id: str
    #: card id -> opportunity id
    links: dict[str, str]

    def run(self, name: str, job: str, **args: Any) -> str:
        """Run ``job`` with ``args`` as job ``name``; its summary (fails the test if it fails)."""
        spec = JobSpec(job=job, cron="@daily", args=args)
        registry.get(job).settings_of(args)
        result = run_job(self.store, name, spec, config=self.config)
        assert result.status == "succeeded", result.message
        assert runs.get(self.store, result.id) is not None
        return str(result.message)

    def cards(self) -> dict[str, dict[str, Any]]:
        return {c["id"]: c for c in self.emulator.cards(self.board_id)}


@pytest.fixture
def board(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Board]:
    kind = getattr(request, "param", "sqlite")
    with ExitStack() as stack:
        reporting = (
            f"sqlite:///{tmp_path / 'reports.db'}"
            if kind == "sqlite"
            else stack.enter_context(server_database(kind))
        )
        yield from _board(tmp_path, reporting)


def _board(tmp_path: Path, reporting: str) -> Iterator[Board]:
    emu = TrelloEmulator()
    emu.seed("demo")
    system = f"crm-{tmp_path.name}"
    crm = MemorySystem.named(system)
    rng = random.Random(7)
    with serve(emu):
        board_id = emu.board_id("Delivery")
        lists = {name: emu.list_id(board_id, name) for name in ("Backlog", "In progress", "Won", "Lost")}
        links: dict[str, str] = {}
        for card in emu.cards(board_id):  # the seeded cards: opportunities of their own
            opp = emu.card(card["id"])
            links[card["id"]] = _opp_of(emu, opp)
        for n in range(CARDS - len(links)):
            card = emu.create_card(lists[rng.choice(list(lists))], f"Request {n}")
            opp_id = f"006TEST{n:08d}"
            emu.set_custom_field(card["id"], "Salesforce Opportunity Id", opp_id)
            emu.set_custom_field(card["id"], "Stage", "Prospecting")
            links[card["id"]] = opp_id
        for opp_id in links.values():
            crm.insert(
                "Opportunity",
                {
                    "StageName": rng.choice(STAGES),
                    "Amount": float(rng.randrange(1000, 90000, 500)),
                    "CloseDate": f"2026-0{rng.randrange(1, 9)}-1{rng.randrange(0, 9)}",
                },
                record_id=opp_id,
            )
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
  crm:
    type: memory
    system: {system}
  reporting:
    type: sql
    url: "{reporting}"
"""
        )
        config = load_config(path, environ={})
        store = Store(config.store.url)
        store.upgrade()
        try:
            yield Board(emu, crm, config, store, board_id, links)
        finally:
            store.dispose()
            MemorySystem.discard(system)


def _opp_of(emu: TrelloEmulator, card: dict[str, Any]) -> str:
    field = emu.custom_field_id(card["idBoard"], "Salesforce Opportunity Id")
    for item in card.get("customFieldItems") or []:
        if item["idCustomField"] == field:
            return str(item["value"]["text"])
    raise AssertionError("a seeded card without an opportunity id")
