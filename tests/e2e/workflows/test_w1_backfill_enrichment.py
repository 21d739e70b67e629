"""W1's Task flow read whole — ``crmsync preview``, ``crmsync migrate`` and ``crmsync sync`` — against
the sandbox: the fields mapped through the Task's polymorphic ``What`` (the Opportunity's stage and
amount, its Account's name) are read with the Tasks, as the polling path reads them, and reach the
cards. A Task on an Account gets the Account's name and leaves the Opportunity's fields empty."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crmsync.config import load_config
from crmsync.engine.migrate import Migration
from crmsync.engine.preview import Preview
from crmsync.engine.runtime import Runtime
from crmsync.engine.sync import InitialSync
from crmsync.sandbox.runner import serve
from crmsync.sandbox.salesforce import SalesforceEmulator
from crmsync.sandbox.tls import Materials
from crmsync.sandbox.trello import TrelloEmulator
from crmsync.store.db import Store

FLOW = "requests"

#: the recipe's Task flow (examples/sales-to-trello), with a match field so that it can be migrated
CONFIG = """
version: 1
store:
  url: sqlite:///{db}
connections:
  salesforce:
    type: salesforce
    auth: jwt
    login_url: ${{SALESFORCE_LOGIN_URL}}
    instance_url: ${{SALESFORCE_INSTANCE_URL}}
    client_id: ${{SALESFORCE_CLIENT_ID}}
    username: ${{SALESFORCE_USERNAME}}
    private_key_file: ${{SALESFORCE_JWT_KEY_FILE}}
    ca_file: ${{SALESFORCE_CA_FILE}}
  trello:
    type: trello
    api_url: ${{TRELLO_API_URL}}
    key: ${{TRELLO_KEY}}
    token: ${{TRELLO_TOKEN}}
    app_secret: ${{TRELLO_SECRET}}
    board: Delivery
    default_list: Backlog
flows:
  {flow}:
    source: salesforce
    source_object: Task
    target: trello
    object: Card
    key: Id
    match: {{field: Salesforce Task Id}}
    when: {{field: Subject, starts_with: "[Delivery]"}}
    on_delete: ignore
    fields:
      - {{source: Subject, target: name}}
      - {{source: What.Name, target: desc}}
      - {{source: Id, target: Salesforce Task Id}}
      - {{source: WhatId, target: Salesforce Opportunity Id}}
      - {{source: What.StageName, target: Stage}}
      - {{source: What.Amount, target: Amount}}
      - {{source: What.Account.Name, target: Account}}
"""


@dataclass
class World:
    runtime: Runtime
    sf: SalesforceEmulator
    trello: TrelloEmulator
    on_opportunity: str
    """a "[Delivery]" Task on the Opportunity "Stark stores" (Needs Analysis, 22,000, Stark Retail)"""
    on_account: str
    """a "[Delivery]" Task on the Account "Stark Retail\""""


@pytest.fixture
def world(materials: Materials, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    sf = SalesforceEmulator(materials=materials)
    sf.seed("demo")
    trello = TrelloEmulator(retry_delays=(0.05, 0.1, 0.15))
    trello.seed("demo")
    opportunity = next(o for o in sf.records("Opportunity") if o["Name"] == "Stark stores")
    account = next(a for a in sf.records("Account") if a["Name"] == "Stark Retail")
    on_opportunity = sf.insert(
        "Task", {"Subject": "[Delivery] Stark stores set-up", "WhatId": opportunity["Id"]}
    )
    on_account = sf.insert("Task", {"Subject": "[Delivery] Stark Retail audit", "WhatId": account["Id"]})
    with serve(sf, materials=materials), serve(trello):
        for key, value in {**sf.credentials(), **trello.credentials()}.items():
            monkeypatch.setenv(key, value)
        path = tmp_path / "crmsync.yaml"
        path.write_text(CONFIG.format(db=tmp_path / "crmsync.db", flow=FLOW))
        cfg = load_config(path)
        runtime = Runtime(cfg, store=Store(cfg.store.url), upgrade=True)
        try:
            yield World(runtime, sf, trello, on_opportunity, on_account)
        finally:
            runtime.close()


def enriched(world: World) -> dict[str, dict[str, Any]]:
    """What the Tasks of the world carry to their cards through ``What``: the fields a TYPEOF reads."""
    opportunity = next(o for o in world.sf.records("Opportunity") if o["Name"] == "Stark stores")
    return {
        world.on_opportunity: {
            "desc": "Stark stores",
            "Stage": "Needs Analysis",
            "Amount": 22000,
            "Account": "Stark Retail",
            "Salesforce Opportunity Id": opportunity["Id"],
        },
        world.on_account: {"desc": "Stark Retail", "Stage": None, "Amount": None, "Account": None},
    }


def check_cards(world: World) -> None:
    """One card per Task of the world, holding the values read through ``What``."""
    trello = world.trello
    board = trello.board_id("Delivery")
    names = {"Stage": "text", "Account": "text", "Amount": "number"}
    for task, wanted in enriched(world).items():
        [card] = [
            c for c in trello.cards(board) if _item(trello, board, c, "Salesforce Task Id", "text") == task
        ]
        assert wanted["desc"] in card["desc"]
        found = {name: _item(trello, board, card, name, kind) for name, kind in names.items()}
        if found["Amount"] is not None:
            found["Amount"] = float(found["Amount"])
        assert found == {name: wanted[name] for name in names}, task


def _item(trello: TrelloEmulator, board: str, card: dict[str, Any], name: str, kind: str) -> Any:
    field = trello.custom_field_id(board, name)
    for item in card.get("customFieldItems") or []:
        if item["idCustomField"] == field:
            return item["value"].get(kind)
    return None


def test_preview_shows_the_values_read_through_what(world: World) -> None:
    shown = Preview(world.runtime, connector=world.runtime.connector).run(FLOW)
    by_task = {r.record: r for r in shown.records}
    for task, wanted in enriched(world).items():
        preview = by_task[task]
        assert preview.action == "create", preview
        new = {c.field: c.new for c in preview.fields}
        assert {k: new.get(k) for k in wanted} == wanted, task
    first = Preview(world.runtime, connector=world.runtime.connector).run(FLOW, limit=1)
    assert first.limited and len(first.records) == 1  # read page by page, not exported whole


def test_a_migration_writes_the_values_read_through_what(world: World) -> None:
    dry = Migration(world.runtime, FLOW, dry_run=True).run()
    assert dry.failed == 0 and dry.created >= 2
    summary = Migration(world.runtime, FLOW).run()
    assert summary.failed == 0 and summary.created >= 2
    check_cards(world)


def test_a_sync_writes_the_values_read_through_what(world: World) -> None:
    summary = InitialSync(world.runtime, poll_interval=0.05).run(FLOW, wait=10)
    assert summary.complete and summary.to_target.failed == 0
    check_cards(world)
