"""The Salesforce → Trello part of ``crmsync demo`` (W1): sales requests on a delivery board, with a
reporting database.

crmsync runs the sales-to-trello recipe against the running sandbox, with its reporting database
on a SQLite file of the demo's folder. A "[Delivery]" Task is created in Salesforce and becomes a
card with the Salesforce ids and its Opportunity's stage, amount and account; a person moves the
card through the sandbox's Trello API, and Trello's signed webhook brings the move to crmsync's
HTTP endpoint, which sets the Task's Status and writes the card's row and history to the reporting
tables. The deal is then won in Salesforce and each of the recipe's daily jobs runs once.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import sqlalchemy as sa
from rich.console import Console

from crmsync.cli.demo_leads import serving, step, wait
from crmsync.cli.webhooks import receiving_objects
from crmsync.config import load_config
from crmsync.connectors.capabilities import WebhookSource, require
from crmsync.engine.runtime import Runtime
from crmsync.errors import CrmsyncError
from crmsync.scheduler.scheduler import run_job, specs_from_config
from crmsync.service.process import Process
from crmsync.store import webhooks as receivers
from crmsync.store.db import Store

if TYPE_CHECKING:
    from crmsync.sandbox.runner import Sandbox

OPPORTUNITY = "Stark stores"
SUBJECT = "[Delivery] Stark stores set-up"
#: the card's custom fields the recipe fills from the Task, its Opportunity and that one's Account
CARD_FIELDS = ("Salesforce Task Id", "Salesforce Opportunity Id", "Stage", "Amount", "Account")
#: the person who moves the card on the board
PERSON = "alice"


@dataclass
class Board:
    """The sandbox's Trello, the Delivery board, and a person's token for its API."""

    trello: Any
    board: str
    api: str
    key: str
    token: str

    def card(self, name: str) -> dict[str, Any] | None:
        return next((c for c in self.trello.cards(self.board) if c["name"] == name), None)

    def fields(self, card: dict[str, Any]) -> dict[str, Any]:
        """The card's custom fields by name (a list field's option text)."""
        names = {self.trello.custom_field_id(self.board, n): n for n in (*CARD_FIELDS, "Update status")}
        out: dict[str, Any] = {}
        for item in self.trello.card(card["id"]).get("customFieldItems") or []:
            name = names.get(item["idCustomField"])
            if name is not None:
                out[name] = next(iter((item.get("value") or {}).values()), item.get("idValue"))
        return out

    def list_name(self, card_id: str) -> str:
        card = self.trello.card(card_id)
        lists = {
            n: self.trello.list_id(self.board, n) for n in ("Backlog", "In progress", "Done", "Won", "Lost")
        }
        return next((n for n, i in lists.items() if i == card["idList"]), card["idList"])

    def move(self, card_id: str, list_name: str) -> None:
        """Move the card as the person would: a PUT to the Trello API with their own token."""
        reply = httpx.put(
            f"{self.api}/cards/{card_id}",
            params={
                "idList": self.trello.list_id(self.board, list_name),
                "key": self.key,
                "token": self.token,
            },
            timeout=10,
        )
        reply.raise_for_status()


def run_trello_demo(box: Sandbox, recipe: Path, workdir: Path, console: Console, *, port: int = 0) -> bool:
    """Run the W1 scenario against the running sandbox; True if the card, Salesforce, the reporting
    tables and the five jobs all did what they should."""
    if not recipe.exists():
        console.print(
            f"[red]recipe {recipe} not found[/red]; run from the project folder or pass --trello-recipe"
        )
        return False
    reporting = f"sqlite:///{(workdir / 'db' / 'reporting.db').resolve()}"
    (workdir / "db" / "reporting.db").unlink(missing_ok=True)
    env = {**os.environ, **box.env(), "REPORTING_DB_URL": reporting}
    cfg = load_config(recipe, environ=env)
    runtime = Runtime(cfg, store=Store(f"sqlite:///{(workdir / 'db' / 'trello.db').resolve()}"), upgrade=True)
    # board actions reach crmsync by the webhook alone: no board reconcile during the demo, and the
    # jobs run once each below instead of on their schedule
    proc = Process(
        runtime,
        web=True,
        workers=2,
        host="127.0.0.1",
        port=port,
        poll_interval=1.0,
        reconcile_interval=3600,
        scheduler=False,
    )
    proc.bind()
    server = threading.Thread(target=proc.run, daemon=True, name="crmsync-trello")
    server.start()
    base = f"http://127.0.0.1:{proc.bound_port}"
    try:
        wait(lambda: serving(f"{base}/healthz"), runtime)  # before any webhook
        hooks = _ensure_webhooks(runtime, base)
        sf: Any = box.salesforce
        trello: Any = box.trello
        credentials = trello.credentials()
        board = Board(
            trello,
            trello.board_id("Delivery"),
            credentials["TRELLO_API_URL"],
            credentials["TRELLO_KEY"],
            trello.add_token(PERSON),
        )
        console.print(
            f"\n[bold]Sales requests: Salesforce Task → Trello card → Salesforce and the reporting "
            f"database[/bold] — Trello's webhook to {hooks}",
            soft_wrap=True,
        )
        return _scenario(runtime, reporting=reporting, sf=sf, board=board, console=console)
    except (TimeoutError, CrmsyncError, httpx.HTTPError) as exc:
        console.print(
            f"[red]✗ the Salesforce → Trello workflow stopped: {exc}[/red] (see crmsync log)", soft_wrap=True
        )
        return False
    finally:
        proc.stop()
        server.join(10)
        runtime.close()


def _ensure_webhooks(runtime: Runtime, base: str) -> str:
    """What ``crmsync webhooks ensure`` does, for the recipe's webhook sources: their URL."""
    urls = []
    for name, objects in receiving_objects(runtime.config).items():
        source = require(runtime.connector(name), WebhookSource)
        protected_by_url = source.protection().kind == "secret_url"
        url = source.receiver_url(
            base, receivers.receiver(runtime.store, name).url_secret if protected_by_url else None
        )
        receivers.set_callback_url(runtime.store, name, url)
        for named in objects:
            source.ensure_subscriptions(named, url, attempt="demo")
        urls.append(url)
    return ", ".join(urls)


def _scenario(runtime: Runtime, *, reporting: str, sf: Any, board: Board, console: Console) -> bool:
    opportunity = next(o for o in sf.records("Opportunity") if o["Name"] == OPPORTUNITY)
    account = sf.get("Account", opportunity["AccountId"]) or {}
    task = sf.insert("Task", {"Subject": SUBJECT, "WhatId": opportunity["Id"]})
    step(
        console,
        f"a Task is created in Salesforce: {task} {SUBJECT!r}, related to the opportunity {OPPORTUNITY!r}",
    )

    def carded() -> dict[str, Any] | None:
        """The card once crmsync has set all its fields."""
        found = board.card(SUBJECT)
        return found if found is not None and all(n in board.fields(found) for n in CARD_FIELDS) else None

    wait(lambda: carded() is not None, runtime, 30)
    card = carded() or {}
    fields = board.fields(card)
    console.print(
        f"    card {card['id']} in {board.list_name(card['id'])}: "
        + ", ".join(f"{name} = {fields.get(name)}" for name in CARD_FIELDS),
        soft_wrap=True,
    )
    enriched = (
        fields.get("Salesforce Task Id") == task
        and fields.get("Salesforce Opportunity Id") == opportunity["Id"]
        and fields.get("Stage") == opportunity["StageName"]
        and float(fields.get("Amount") or 0) == float(opportunity["Amount"])
        and fields.get("Account") == account.get("Name")
    )

    def status() -> str:
        return str((sf.get("Task", task) or {}).get("Status"))

    before = status()
    step(
        console, f"{PERSON} moves the card to 'In progress' on the board (PUT {board.api}/cards/{card['id']})"
    )
    board.move(card["id"], "In progress")
    wait(lambda: status() == "In Progress", runtime, 30)
    wait(lambda: (_card_row(reporting, card["id"]) or {}).get("list_name") == "In progress", runtime, 30)
    row = _card_row(reporting, card["id"]) or {}
    console.print(
        f"    Trello's signed webhook → crmsync → Salesforce: Task {task} Status {before} → {status()}",
        soft_wrap=True,
    )
    _show_reporting(console, reporting, card["id"])
    moved = status() == "In Progress" and row.get("task_id") == task

    step(
        console,
        f"the opportunity {OPPORTUNITY!r} is won in Salesforce; the recipe's five daily jobs run once each",
    )
    sf.update("Opportunity", opportunity["Id"], {"StageName": "Closed Won"})
    results = []
    for name, spec in specs_from_config(runtime.config).items():
        result = run_job(runtime.store, name, spec, config=runtime.config, runtime=runtime)
        results.append((name, spec.job, result.status, str(result.message)))
        colour = "green" if result.status == "succeeded" else "red"
        console.print(
            f"    job {name} ({spec.job}) [{colour}]{result.status}[/{colour}]: {result.message}",
            soft_wrap=True,
        )
    console.print(
        "    (the board's four seeded cards name opportunities that are not in the sandbox's Salesforce: "
        "the refresh and the mover leave them alone)",
        soft_wrap=True,
        style="dim",
    )
    jobs_ok = len(results) == 5 and all(r[2] == "succeeded" for r in results)
    # the win-loss mover's move is a board action too: the webhook brings it to the Task and the tables
    wait(lambda: status() == "Completed", runtime, 30)
    wait(lambda: (_card_row(reporting, card["id"]) or {}).get("list_name") == "Won", runtime, 30)
    console.print(
        f"    the card is in {board.list_name(card['id'])} with Stage {board.fields(card).get('Stage')}; "
        f"Salesforce: Task {task} Status {status()}",
        soft_wrap=True,
    )
    counts = _counts(reporting, card["id"])
    console.print(
        "    reporting tables: " + ", ".join(f"{table} {n} rows" for table, n in counts.items()),
        soft_wrap=True,
    )
    reported = all(counts.values()) and counts["crm_events (this card)"] >= 3
    ok = enriched and moved and jobs_ok and reported
    if ok:
        console.print(
            "[green]✓ the Task became a card with its Salesforce ids and its opportunity's stage, amount and "
            "account; the move on the board reached Salesforce and the reporting tables by the webhook; "
            "the five daily jobs ran.[/green]",
            soft_wrap=True,
        )
    else:
        console.print(
            "[red]✗ W1 did not do what it should "
            f"(card fields {'ok' if enriched else 'wrong'}, move {'ok' if moved else 'not in Salesforce'}, "
            f"jobs {'ok' if jobs_ok else 'failed'}, reporting {'ok' if reported else 'rows missing'}; "
            "see crmsync log)[/red]",
            soft_wrap=True,
        )
    return ok


def _query(url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.text(sql), params).mappings()]
    except sa.exc.OperationalError:  # the table is not there yet
        return []
    finally:
        engine.dispose()


def _card_row(url: str, card_id: str) -> dict[str, Any] | None:
    found = _query(url, "SELECT * FROM crm_card WHERE source_id = :id", id=card_id)
    return found[0] if found else None


def _counts(url: str, card_id: str) -> dict[str, int]:
    def count(sql: str, **params: Any) -> int:
        rows = _query(url, sql, **params)
        return int(rows[0]["n"]) if rows else 0

    return {
        "crm_card": count("SELECT COUNT(*) AS n FROM crm_card"),
        "crm_events (this card)": count(
            "SELECT COUNT(*) AS n FROM crm_events WHERE source_id = :id", id=card_id
        ),
        "crm_opportunity": count("SELECT COUNT(*) AS n FROM crm_opportunity"),
        "crm_workload_snapshot": count("SELECT COUNT(*) AS n FROM crm_workload_snapshot"),
    }


def _show_reporting(console: Console, url: str, card_id: str) -> None:
    """The card's current row and its history, as the reporting database holds them."""
    row = _card_row(url, card_id) or {}
    console.print(
        "    crm_card: "
        + ", ".join(
            f"{k} = {row.get(k)}" for k in ("name", "list_name", "task_id", "stage", "amount", "account")
        ),
        soft_wrap=True,
    )
    for event in _query(url, "SELECT * FROM crm_events WHERE source_id = :id ORDER BY id", id=card_id):
        change = f"{_short(event['old_values'])} → {_short(event['new_values'])}"
        who = event["who"] or "-"
        console.print(
            f"    crm_events: {str(event['at'])[:19]}  {who:<12} {event['action']:<22} {change}",
            soft_wrap=True,
            markup=False,
        )


def _short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"
