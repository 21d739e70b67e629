"""W1's board flow into the reporting database — SQLite, PostgreSQL and MariaDB: 30 board actions of
every kind give exact current-state and history tables (one row per action); and crmsync stopped
while 50 actions happen on the board catches up on restart (on another port, so the board's
webhook delivers nowhere any more): every missed action is read back from the board's actions,
one history row each, and the cards' current state follows."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from tests.e2e.conftest import wait_until
from tests.integration.conftest import KINDS, server_database

from crmsync.config import load_config
from crmsync.connectors.capabilities import WebhookSource, require
from crmsync.engine.runtime import Runtime
from crmsync.sandbox.runner import serve
from crmsync.sandbox.trello import TrelloEmulator
from crmsync.service.process import Process
from crmsync.store import webhooks as receivers
from crmsync.store.db import Store

RECIPE = Path(__file__).parents[3] / "examples" / "sales-to-trello" / "crmsync.yaml"


def board_only(recipe: str, store: Path) -> str:
    """The recipe's board flow (Trello → reporting) alone, with the recipe's field map (no jobs)."""
    head, flows = recipe.split("\nflows:\n", 1)
    board = flows[flows.index("  board:\n") :].split("\njobs:\n", 1)[0]
    head = head[: head.index("  salesforce:\n")] + head[head.index("  trello:\n") :]
    head = head.replace("sqlite:///crmsync.db", f"sqlite:///{store}")
    head = head.replace(
        "worker:\n  concurrency: 2\n", "worker:\n  concurrency: 2\n  poll_interval_seconds: 0.05\n"
    )
    return f"{head}\nflows:\n{board}"


@pytest.fixture(params=KINDS)
def reporting_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'reporting.db'}"
        return
    with server_database(request.param) as url:
        yield url


@pytest.fixture
def trello() -> Iterator[TrelloEmulator]:
    emulator = TrelloEmulator(retry_delays=(0.05, 0.1, 0.15))
    emulator.seed("demo")
    with serve(emulator):
        yield emulator


class Crmsync:
    """crmsync on the recipe's board flow, started and stopped like a process (one store)."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.running: tuple[Runtime, Process, threading.Thread] | None = None

    def start(self) -> str:
        cfg = load_config(self.config)
        runtime = Runtime(cfg, store=Store(cfg.store.url), upgrade=True)
        proc = Process(runtime, web=True, workers=2, host="127.0.0.1", port=0, poll_interval=0.2)
        proc.bind()
        thread = threading.Thread(target=proc.run, daemon=True)
        thread.start()
        self.running = (runtime, proc, thread)
        base = f"http://127.0.0.1:{proc.bound_port}"
        wait_until(lambda: _answers(f"{base}/webhooks/trello"), timeout=20)
        return base

    @property
    def runtime(self) -> Runtime:
        assert self.running is not None
        return self.running[0]

    def ensure_webhook(self, base: str) -> None:  # as `crmsync webhooks ensure` does
        source = require(self.runtime.connector("trello"), WebhookSource)
        url = source.receiver_url(base, None)
        receivers.set_callback_url(self.runtime.store, "trello", url)
        source.ensure_subscriptions("Card", url, attempt="test")

    def stop(self) -> None:
        if self.running is None:
            return
        runtime, proc, thread = self.running
        proc.stop()
        thread.join(10)
        runtime.close()
        self.running = None


def _answers(url: str) -> bool:
    try:
        return httpx.head(url).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def crmsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trello: TrelloEmulator, reporting_url: str
) -> Iterator[Crmsync]:
    for key, value in trello.credentials().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("REPORTING_DB_URL", reporting_url)
    config = tmp_path / "crmsync.yaml"
    config.write_text(board_only(RECIPE.read_text(), tmp_path / "crmsync.db"))
    with ExitStack() as stack:
        box = Crmsync(config)
        stack.callback(box.stop)
        yield box


def rows(url: str, query: str) -> list[dict[str, Any]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("crm_events"):
                return []
            return [dict(r) for r in conn.execute(sa.text(query)).mappings()]
    finally:
        engine.dispose()


def test_actions_made_while_crmsync_was_down_are_caught_up_one_history_row_each(
    crmsync: Crmsync, trello: TrelloEmulator, reporting_url: str
) -> None:
    board = trello.board_id("Delivery")
    backlog, doing = trello.list_id(board, "Backlog"), trello.list_id(board, "In progress")
    base = crmsync.start()
    crmsync.ensure_webhook(base)
    first = trello.create_card(backlog, "Before the stop")
    wait_until(
        lambda: any(r["source_id"] == first["id"] for r in rows(reporting_url, "SELECT * FROM crm_card"))
    )
    crmsync.stop()

    seen = {a["id"] for a in trello.actions(board)}
    made = [trello.create_card(backlog, f"Missed {i}") for i in range(10)]
    for i, card in enumerate(made):
        trello.move_card(card["id"], doing)
        trello.comment(card["id"], f"note {i}")
        trello.update_card(card["id"], name=f"Missed {i} (renamed)")
        trello.update_card(card["id"], due=f"2027-01-{i + 10:02d}T12:00:00.000Z")
    missed = [a for a in reversed(trello.actions(board)) if a["id"] not in seen]
    assert len(missed) == 50

    crmsync.start()  # a new port: the webhook delivers nowhere; only the catch-up can tell

    def history() -> list[dict[str, Any]]:
        ids = {a["id"] for a in missed}
        return [
            e for e in rows(reporting_url, "SELECT * FROM crm_events ORDER BY id") if e["delivery_id"] in ids
        ]

    wait_until(lambda: len(history()) >= 50, timeout=25)
    events = history()
    assert sorted(e["delivery_id"] for e in events) == sorted(a["id"] for a in missed)  # each once
    for card in made:  # one card's actions in the order they happened
        mine = [a for a in missed if (a["data"].get("card") or {}).get("id") == card["id"]]
        assert [e["delivery_id"] for e in events if e["source_id"] == card["id"]] == [a["id"] for a in mine]
        assert [e["action"] for e in events if e["source_id"] == card["id"]] == [
            "createCard", "updateCard", "commentCard", "updateCard", "updateCard"
        ]  # fmt: skip
    current = {r["source_id"]: r for r in rows(reporting_url, "SELECT * FROM crm_card")}
    for i, card in enumerate(made):
        row = current[card["id"]]
        assert (row["name"], row["list_name"]) == (f"Missed {i} (renamed)", "In progress")
        assert str(row["due"]).startswith(f"2027-01-{i + 10:02d}")
    assert first["id"] in current and len(events) == 50


def test_thirty_board_actions_of_every_kind_give_exact_current_and_history_tables(
    crmsync: Crmsync, trello: TrelloEmulator, reporting_url: str
) -> None:
    board = trello.board_id("Delivery")
    lists = {name: trello.list_id(board, name) for name in ("Backlog", "In progress", "Done")}
    base = crmsync.start()
    crmsync.ensure_webhook(base)
    seen = {a["id"] for a in trello.actions(board)}
    a, b, c = (trello.create_card(lists["Backlog"], f"Card {n}") for n in "abc")
    trello.move_card(a["id"], lists["In progress"])
    trello.move_card(b["id"], lists["Done"])
    trello.move_card(c["id"], lists["In progress"])
    trello.update_card(a["id"], name="Card a (v2)")
    trello.update_card(b["id"], name="Card b (v2)")
    trello.update_card(a["id"], due="2027-02-01T09:00:00.000Z")
    trello.update_card(c["id"], due="2027-03-01T09:00:00.000Z")
    trello.update_card(b["id"], due="2027-04-01T09:00:00.000Z")
    trello.update_card(a["id"], dueComplete=True)
    for card in (a, b, c, a):
        trello.comment(card["id"], f"about {card['name']}")
    trello.add_member_to_card(a["id"], "alice")
    trello.add_member_to_card(b["id"], "bob")
    trello.remove_member_from_card(a["id"], "alice")
    trello.add_label_to_card(a["id"], trello.label_id(board, "Urgent"))
    trello.add_label_to_card(c["id"], trello.label_id(board, "Renewal"))
    trello.remove_label_from_card(a["id"], trello.label_id(board, "Urgent"))
    trello.set_custom_field(a["id"], "Stage", "Prospecting")
    trello.set_custom_field(b["id"], "Amount", 1200)
    trello.set_custom_field(c["id"], "Salesforce Task Id", "00T5g00000Xyz01")
    trello.update_card(c["id"], closed=True)
    trello.update_card(c["id"], closed=False)
    trello.delete_card(b["id"])
    trello.move_card(a["id"], lists["Done"])
    trello.update_card(c["id"], name="Card c (v2)")
    actions = [x for x in reversed(trello.actions(board)) if x["id"] not in seen]
    assert len(actions) == 30 and len({x["type"] for x in actions}) >= 9

    def history() -> list[dict[str, Any]]:
        ids = {x["id"] for x in actions}
        return [
            e for e in rows(reporting_url, "SELECT * FROM crm_events ORDER BY id") if e["delivery_id"] in ids
        ]

    wait_until(lambda: len(history()) >= 30, timeout=25)
    assert sorted((e["delivery_id"], e["action"]) for e in history()) == sorted(
        (x["id"], x["type"]) for x in actions
    )
    current = {r["source_id"]: r for r in rows(reporting_url, "SELECT * FROM crm_card")}
    ra, rb, rc = current[a["id"]], current[b["id"]], current[c["id"]]
    assert (ra["name"], ra["list_name"], bool(ra["due_complete"]), ra["stage"]) == (
        "Card a (v2)", "Done", True, "Prospecting"
    )  # fmt: skip
    assert str(ra["due"]).startswith("2027-02-01") and "alice" not in str(ra["members"])
    assert "Urgent" not in str(ra["labels"]) and ra["deleted_at"] is None
    assert rb["deleted_at"] is not None and rb["name"] == "Card b (v2)"
    assert (rc["name"], rc["list_name"], bool(rc["closed"]), rc["task_id"]) == (
        "Card c (v2)", "In progress", False, "00T5g00000Xyz01"
    )  # fmt: skip
    assert "Renewal" in str(rc["labels"]) and str(rc["due"]).startswith("2027-03-01")
