"""W1 end to end, in one process against the sandbox: the sales-to-trello recipe with its reporting
database on SQLite, PostgreSQL and MariaDB — a "[Delivery]" Task becomes a card with its ids, board
actions of several kinds land in crm_card and crm_events (one history row per action, comments
included), a card move reaches the Task, and a forged delivery is refused with nothing stored."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from tests.e2e.conftest import wait_until
from tests.e2e.workflows.test_w1_catch_up import reporting_url

from crmsync.config import load_config
from crmsync.connectors.capabilities import WebhookSource, require
from crmsync.engine.runtime import Runtime
from crmsync.sandbox.runner import serve
from crmsync.sandbox.salesforce import SalesforceEmulator
from crmsync.sandbox.tls import Materials
from crmsync.sandbox.trello import TrelloEmulator
from crmsync.service.process import Process
from crmsync.store import webhooks as receivers
from crmsync.store.db import Store
from crmsync.store.schema import changes

RECIPE = Path(__file__).parents[3] / "examples" / "sales-to-trello" / "crmsync.yaml"


@pytest.fixture
def trello() -> Iterator[TrelloEmulator]:
    emulator = TrelloEmulator(retry_delays=(0.05, 0.1, 0.15))
    emulator.seed("demo")
    with serve(emulator):
        yield emulator


@pytest.fixture
def sf(materials: Materials) -> Iterator[SalesforceEmulator]:
    emulator = SalesforceEmulator(materials=materials)
    emulator.seed("demo")
    with serve(emulator, materials=materials):
        yield emulator


__all__ = ["reporting_url"]  # the reporting database, on each kind (a fixture shared with the catch-up tests)


@pytest.fixture
def w1(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sf: SalesforceEmulator,
    trello: TrelloEmulator,
    reporting_url: str,
) -> Iterator[tuple[Runtime, str]]:
    for key, value in {**sf.credentials(), **trello.credentials()}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("REPORTING_DB_URL", reporting_url)
    text = RECIPE.read_text().replace("sqlite:///crmsync.db", f"sqlite:///{tmp_path / 'crmsync.db'}")
    text = text.replace(
        "worker:\n  concurrency: 2\n",
        "worker:\n  concurrency: 2\n  poll_interval_seconds: 0.05\n  lease_seconds: 5\n",
    )
    path = tmp_path / "crmsync.yaml"
    path.write_text(text)
    cfg = load_config(path)
    runtime = Runtime(cfg, store=Store(cfg.store.url), upgrade=True)
    proc = Process(runtime, web=True, workers=2, host="127.0.0.1", port=0, poll_interval=0.2)
    proc.bind()
    thread = threading.Thread(target=proc.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{proc.bound_port}"
    wait_until(lambda: _answers(f"{base}/webhooks/trello"), timeout=20)
    source = require(runtime.connector("trello"), WebhookSource)
    url = source.receiver_url(base, None)
    receivers.set_callback_url(runtime.store, "trello", url)
    source.ensure_subscriptions("Card", url, attempt="test")  # `crmsync webhooks ensure`
    yield runtime, base
    proc.stop()
    thread.join(10)
    runtime.close()


def _answers(url: str) -> bool:
    try:
        return httpx.head(url).status_code == 200
    except httpx.TransportError:
        return False


def rows(runtime: Runtime, table: str, order: str) -> list[dict[str, Any]]:
    url = str(runtime.config.connections["reporting"].url.get_secret_value())  # type: ignore[union-attr]
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(table):
                return []
            return [
                dict(r) for r in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY {order}")).mappings()
            ]
    finally:
        engine.dispose()


def test_board_actions_land_in_the_reporting_tables(w1: tuple[Runtime, str], trello: TrelloEmulator) -> None:
    runtime, _ = w1
    board = trello.board_id("Delivery")
    card = trello.create_card(trello.list_id(board, "Backlog"), "Hooli: kick-off")
    trello.move_card(card["id"], trello.list_id(board, "In progress"))
    trello.comment(card["id"], "Called them")
    trello.update_card(card["id"], name="Hooli: kick-off (v2)")
    wanted = ["createCard", "updateCard", "commentCard", "updateCard"]

    def landed() -> bool:
        mine = [e for e in rows(runtime, "crm_events", "id") if e["source_id"] == card["id"]]
        return [e["action"] for e in mine] == wanted

    wait_until(landed, timeout=20)
    [current] = [r for r in rows(runtime, "crm_card", "source_id") if r["source_id"] == card["id"]]
    assert (current["name"], current["list_name"]) == ("Hooli: kick-off (v2)", "In progress")
    events = [e for e in rows(runtime, "crm_events", "id") if e["source_id"] == card["id"]]
    assert _json(events[2]["new_values"]) == {"text": "Called them"} and events[2]["delivery_id"]
    assert _json(events[1]["old_values"])["list_name"] == "Backlog"
    assert _json(events[1]["new_values"])["list_name"] == "In progress"


def _json(value: Any) -> Any:
    """A JSON column's value: text on SQLite and MariaDB, decoded already on PostgreSQL."""
    return json.loads(value) if isinstance(value, str) else value


def test_a_forged_delivery_is_refused_and_nothing_is_stored(w1: tuple[Runtime, str]) -> None:
    runtime, base = w1
    body = b'{"action": {"id": "5f0000000000000000000001", "type": "commentCard", "data": {}}}'
    answer = httpx.post(f"{base}/webhooks/trello", content=body, headers={"X-Trello-Webhook": "Zm9yZ2Vk"})
    assert answer.status_code == 401
    assert httpx.head(f"{base}/webhooks/trello").status_code == 200
    with runtime.store.read() as conn:
        stored = conn.execute(
            sa.select(changes.c.id).where(changes.c.delivery_id.like("5f0000000000000000000001%"))
        ).all()
    assert stored == []


def test_a_delivery_task_becomes_a_card_and_a_move_reaches_the_task(
    w1: tuple[Runtime, str], sf: SalesforceEmulator, trello: TrelloEmulator
) -> None:
    runtime, _ = w1
    opportunity = next(o for o in sf.records("Opportunity") if o["Name"] == "Stark stores")
    task = sf.insert("Task", {"Subject": "[Delivery] Stark stores set-up", "WhatId": opportunity["Id"]})
    sf.insert("Task", {"Subject": "Call back later", "WhatId": opportunity["Id"]})  # not for the board
    board = trello.board_id("Delivery")

    def card() -> dict[str, Any] | None:
        return next((c for c in trello.cards(board) if c["name"] == "[Delivery] Stark stores set-up"), None)

    # the card is created, then its custom fields are set (ids, stage, amount, account)
    wait_until(lambda: len((card() or {}).get("customFieldItems") or []) == 5, timeout=30)
    made = card()
    assert made is not None and made["idList"] == trello.list_id(board, "Backlog")
    assert "Stark stores" in made["desc"]
    items = {i["idCustomField"]: i for i in trello.card(made["id"]).get("customFieldItems") or []}
    task_field = trello.custom_field_id(board, "Salesforce Task Id")
    opportunity_field = trello.custom_field_id(board, "Salesforce Opportunity Id")
    assert items[task_field]["value"]["text"] == task
    assert items[opportunity_field]["value"]["text"] == opportunity["Id"]
    # the related Opportunity's stage and amount and its Account's name, read with the Task
    account = sf.get("Account", opportunity["AccountId"])
    assert account is not None
    assert items[trello.custom_field_id(board, "Stage")]["value"]["text"] == opportunity["StageName"]
    assert float(items[trello.custom_field_id(board, "Amount")]["value"]["number"]) == opportunity["Amount"]
    assert items[trello.custom_field_id(board, "Account")]["value"]["text"] == account["Name"]
    assert (opportunity["StageName"], account["Name"]) == ("Needs Analysis", "Stark Retail")
    assert not any(c["name"] == "Call back later" for c in trello.cards(board))
    trello.move_card(made["id"], trello.list_id(board, "In progress"))

    def moved() -> bool:
        [row] = [t for t in sf.records("Task") if t["Id"] == task]
        return bool(row["Status"] == "In Progress")

    wait_until(moved, timeout=20)
    wait_until(
        lambda: any(
            r["source_id"] == made["id"] and r["list_name"] == "In progress"
            for r in rows(runtime, "crm_card", "source_id")
        ),
        timeout=20,
    )
    [current] = [r for r in rows(runtime, "crm_card", "source_id") if r["source_id"] == made["id"]]
    assert (current["stage"], current["amount"], current["account"]) == (
        "Needs Analysis",
        22000,
        "Stark Retail",
    )


def test_a_task_on_an_account_becomes_a_card_with_the_account_s_name_and_no_opportunity_values(
    w1: tuple[Runtime, str], sf: SalesforceEmulator, trello: TrelloEmulator
) -> None:
    account = next(a for a in sf.records("Account") if a["Name"] == "Stark Retail")
    task = sf.insert("Task", {"Subject": "[Delivery] Stark Retail audit", "WhatId": account["Id"]})
    board = trello.board_id("Delivery")

    def card() -> dict[str, Any] | None:
        return next((c for c in trello.cards(board) if c["name"] == "[Delivery] Stark Retail audit"), None)

    wait_until(lambda: len((card() or {}).get("customFieldItems") or []) >= 2, timeout=30)
    stats = w1[0].queue.stats
    wait_until(lambda: stats().pending == stats().leased == stats().retrying == 0, timeout=30)  # all written
    made = card()
    assert made is not None and "Stark Retail" in made["desc"]  # What.Name, through TYPEOF's WHEN Account
    items = {i["idCustomField"]: i["value"] for i in trello.card(made["id"]).get("customFieldItems") or []}
    assert items == {
        trello.custom_field_id(board, "Salesforce Task Id"): {"text": task},
        trello.custom_field_id(board, "Salesforce Opportunity Id"): {"text": account["Id"]},
    }  # an Account has no stage, amount or parent account: Stage, Amount and Account stay empty
