"""The Monday.com ⇄ Salesforce part of ``crmsync demo`` (W2): leads qualified on a board.

New leads appear on the sandbox's Leads board; some are qualified and show up in Salesforce
with their Account, Contact and Opportunity (ids written back to the board); one moves on to the
Quote stage; then an edit made in Salesforce flows back to the board.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from rich.console import Console
from rich.table import Table

from crmsync.config import load_config
from crmsync.engine.runtime import Runtime
from crmsync.service.process import Process
from crmsync.store.db import Store

if TYPE_CHECKING:
    from crmsync.sandbox.runner import Sandbox

WEBHOOK_EVENTS = ("create_item", "change_column_value", "change_name", "item_deleted", "item_archived")
LEADS = (
    ("Grace Hopper", "grace@navy.example", "Navy Labs"),
    ("Alan Turing", "alan@bletchley.example", "Bletchley Park"),
    ("Katherine Johnson", "katherine@nasa.example", "NASA Langley"),
)


def run_leads_demo(box: Sandbox, recipe: Path, workdir: Path, console: Console, *, port: int = 0) -> bool:
    """Run the leads scenario against the running sandbox; True if Salesforce and the board agree."""
    env = {**os.environ, **box.env()}
    cfg = load_config(recipe, environ=env)
    runtime = Runtime(cfg, store=Store(f"sqlite:///{(workdir / 'db' / 'leads.db').resolve()}"), upgrade=True)
    proc = Process(
        runtime, web=True, workers=2, host="127.0.0.1", port=port, poll_interval=1.0, reconcile_interval=10
    )
    proc.bind()
    server = threading.Thread(target=proc.run, daemon=True, name="crmsync-leads")
    server.start()
    wait(lambda: serving(f"http://127.0.0.1:{proc.bound_port}/healthz"), runtime)  # before any webhook
    sf: Any = box.salesforce
    monday: Any = box.monday
    board = str(monday.board_id("Leads"))
    for event in WEBHOOK_EVENTS:
        monday.add_webhook(
            board, f"http://127.0.0.1:{proc.bound_port}/webhooks/monday/monday", event, app=True
        )
    try:
        console.print(
            f"\n[bold]Leads: Monday.com board ⇄ Salesforce[/bold] — webhooks to port {proc.bound_port}"
        )
        items = [
            monday.ui_create_item(board, name, values={"status": "New", "email": email, "text": company})
            for name, email, company in LEADS
        ]
        step(console, "3 new leads on the board; qualifying two of them")
        for item in items[:2]:
            monday.ui_change_column(item, "status", "Qualified")
        wait(lambda: all(column(monday, i, "text_mkr4oppt") for i in items[:2]), runtime)
        show(console, monday, sf, items)
        step(console, f"{LEADS[0][0]} moves on to the Quote stage")
        monday.ui_change_column(items[0], "status", "Quote")
        opportunity = column(monday, items[0], "text_mkr4oppt")

        def stage() -> Any:
            return (sf.get("Opportunity", opportunity) or {}).get("StageName")

        wait(lambda: stage() == "Proposal/Price Quote", runtime)
        lead = column(monday, items[1], "text_mkr1lead")
        step(console, f"someone edits {LEADS[1][0]}'s company in Salesforce")
        sf.update("Lead", lead, {"Company": "Bletchley Park Trust"})
        wait(lambda: column(monday, items[1], "text") == "Bletchley Park Trust", runtime, timeout=30)
        show(console, monday, sf, items)
        ok = (
            len([c for c in sf.changes("Lead", client="crmsync") if c["operation"] == "create"]) == 2
            and not column(monday, items[2], "text_mkr1lead")
            and stage() == "Proposal/Price Quote"
        )
        if ok:
            console.print(
                "[green]✓ two qualified leads in Salesforce with their records; the third stayed out; "
                "the Salesforce edit is on the board.[/green]"
            )
        else:
            console.print("[red]✗ the board and Salesforce do not agree (see crmsync log)[/red]")
        return ok
    finally:
        proc.stop()
        server.join(10)
        runtime.close()


def serving(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def column(monday: Any, item: str, column_id: str) -> Any:
    return monday.item(item)["columns"].get(column_id)


def step(console: Console, text: str) -> None:
    console.print(f"  → {text}", soft_wrap=True)


def wait(condition: Callable[[], bool], runtime: Runtime, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the demo waited {timeout} s in vain; queue: {runtime.queue.stats()}")
        time.sleep(0.1)


def show(console: Console, monday: Any, sf: Any, items: list[str]) -> None:
    table = Table("lead", "status", "Salesforce Lead", "Opportunity stage", "company (board)")
    for item in items:
        view = monday.item(item)
        opportunity = sf.get("Opportunity", view["columns"].get("text_mkr4oppt") or "") or {}
        table.add_row(
            view["name"],
            str(view["columns"].get("status") or ""),
            str(view["columns"].get("text_mkr1lead") or "-"),
            str(opportunity.get("StageName") or "-"),
            str(view["columns"].get("text") or ""),
        )
    console.print(table)
