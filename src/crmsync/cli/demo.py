"""``crmsync demo``: the workflows end to end against the sandbox, on this machine.

It starts the sandbox (Salesforce, Trello, Monday.com emulators), crmsync itself with the
usage-billing recipe on a fresh SQLite file, and a small application that submits a stream of
usage entries, corrections and deletions. Half-way, Salesforce goes down (a fault rule) and comes
back: the application keeps being answered 202 and nothing is lost. A live summary shows what
landed. Then leads are qualified on the sandbox's Monday.com board and show up in Salesforce
(:mod:`crmsync.cli.demo_leads`), and a Salesforce Task becomes a Trello card whose moves reach
Salesforce and a reporting database, before the daily jobs run once each
(:mod:`crmsync.cli.demo_trello`). It keeps running and prints where to look.
"""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import shutil
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from crmsync.cli.demo_leads import run_leads_demo, serving, wait
from crmsync.cli.demo_trello import run_trello_demo
from crmsync.cli.sandbox import load_sandbox
from crmsync.client import Client
from crmsync.config import load_config
from crmsync.engine.queue import ChangeQueue
from crmsync.engine.runtime import Runtime
from crmsync.errors import ConfigError, CrmsyncError, LockedRecord
from crmsync.service.process import Process
from crmsync.store import tokens, users
from crmsync.store.db import Store

DEFAULT_RECIPE = Path("examples/usage-billing/crmsync.yaml")
LEADS_RECIPE = Path("examples/monday-salesforce/crmsync.yaml")
TRELLO_RECIPE = Path("examples/sales-to-trello/crmsync.yaml")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


@dataclass
class Tally:
    submitted: int = 0
    corrections: int = 0
    deletions: int = 0
    refused_locked: int = 0
    failed: int = 0
    expected: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    phase: str = "starting"


def demo(
    recipe: Path = typer.Option(DEFAULT_RECIPE, help="The crmsync.yaml to run (the usage-billing recipe)."),
    leads_recipe: Path = typer.Option(
        LEADS_RECIPE, help="The Monday.com ⇄ Salesforce recipe ('' to skip it)."
    ),
    trello_recipe: Path = typer.Option(
        TRELLO_RECIPE, help="The Salesforce → Trello recipe with its reporting database ('' to skip it)."
    ),
    entries: int = typer.Option(300, help="How many usage entries the demo application submits."),
    rate: float = typer.Option(40.0, help="Entries per second the application submits."),
    outage_seconds: float = typer.Option(5.0, help="How long Salesforce is down half-way (0: no outage)."),
    once: bool = typer.Option(False, help="Exit when the demo is done instead of running until Ctrl-C."),
    workdir: Path = typer.Option(
        Path(".crmsync-demo"),
        help="Where the demo keeps its database, keys and log (another one per demo run side by side).",
    ),
    port: int | None = typer.Option(
        None, help="Port of crmsync's ingest API (default 8080, or a free one when 8080 is taken; 0: free)."
    ),
    salesforce_port: int | None = typer.Option(None, help="Salesforce sandbox port (default 8701 or free)."),
    trello_port: int | None = typer.Option(None, help="Trello sandbox port (default 8702 or free)."),
    monday_port: int | None = typer.Option(None, help="Monday.com sandbox port (default 8703 or free)."),
) -> None:
    """Run the workflows against the built-in sandbox (usage billing, then Monday.com leads and
    Salesforce Tasks on a Trello board): no account, no network."""
    console = Console()
    if not recipe.exists():
        console.print(f"[red]recipe {recipe} not found[/red]; run from the project folder or pass --recipe")
        raise typer.Exit(2)
    shutil.rmtree(workdir / "db", ignore_errors=True)
    (workdir / "db").mkdir(parents=True, exist_ok=True)
    log_file = _log_to_file(workdir / "crmsync.log")
    chosen = {"salesforce": salesforce_port, "trello": trello_port, "monday": monday_port}
    box = load_sandbox()(seed="demo", directory=workdir / "sandbox", ports=_free_or_default(chosen))
    try:
        box.start()
    except OSError as exc:
        console.print(
            f"[red]cannot start the sandbox: {exc}[/red]; pick other ports with --salesforce-port ..."
        )
        raise typer.Exit(2) from None
    env = {**os.environ, **box.env()}
    try:
        cfg = load_config(recipe, environ=env)
    except ConfigError as exc:
        box.stop()
        console.print(f"[red]{exc.message}[/red]")
        for problem in exc.problems:
            console.print(f"  {problem}")
        raise typer.Exit(2) from exc
    store = Store(f"sqlite:///{(workdir / 'db' / 'crmsync.db').resolve()}")
    runtime = Runtime(cfg, store=store, upgrade=True)
    proc = Process(
        runtime, web=True, workers=cfg.worker.concurrency, host="127.0.0.1", port=_port(8080, port)
    )
    try:
        proc.bind()
    except OSError as exc:
        runtime.close()
        box.stop()
        console.print(f"[red]cannot listen on port {port}: {exc}[/red]; pick another with --port N (0: any)")
        raise typer.Exit(2) from None
    server = threading.Thread(target=proc.run, daemon=True, name="crmsync")
    server.start()
    base = f"http://127.0.0.1:{proc.bound_port}"
    wait(lambda: serving(f"{base}/healthz"), runtime)
    token = tokens.create_token(runtime.store, "demo-app")
    sf: Any = box.salesforce
    tally = Tally()
    app = threading.Thread(
        target=_application,
        args=(base, token, sf, tally, entries, rate, outage_seconds),
        daemon=True,
        name="demo-app",
    )
    console.print(
        f"[bold]crmsync demo[/bold] — ingest API {base}, Salesforce sandbox {box.servers['salesforce'].url}\n"
        f"crmsync's own log goes to {log_file}",
        soft_wrap=True,
    )
    app.start()
    try:
        with Live(_summary(tally, runtime, sf), console=console, refresh_per_second=4) as live:
            while app.is_alive() or not _settled(runtime):
                live.update(_summary(tally, runtime, sf))
                time.sleep(0.25)
            tally.phase = "done"
            live.update(_summary(tally, runtime, sf))
        console.print()
        ok = _verify(tally, sf, console)
        _explain_dead_letters(runtime, console)
        if str(leads_recipe) not in ("", "."):
            ok = run_leads_demo(box, leads_recipe, workdir, console) and ok
        trello = str(trello_recipe) not in ("", ".")
        if trello:
            ok = run_trello_demo(box, trello_recipe, workdir, console) and ok
        body = json.dumps(
            {"key": "try-1", "fields": {"contract_id": _open_contract(sf), "product": "small", "quantity": 2}}
        )
        console.print(
            "\nWhere to look:\n"
            f"  ingest API      POST {base}/api/v1/flows/usage/records\n"
            "  token           the demo application's (valid while the demo runs):\n"
            f"                  export TOKEN={token}\n"
            f"  try it          curl -X POST {base}/api/v1/flows/usage/records "
            f'-H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" -d \'{body}\'\n'
            f"  a view          GET  {base}/api/v1/views/contracts?account_id=…\n"
            f"  metrics         {base}/metrics\n"
            f"  Salesforce      {box.servers['salesforce'].url}/_sandbox/state  (and /_sandbox/calls)\n"
            f"  store           {runtime.store.shown_url}  (the queue, links and sync log)\n"
            + (
                f"  Trello          {box.servers['trello'].url}/_sandbox/state  (the Delivery board)\n"
                f"  reporting DB    sqlite:///{(workdir / 'db' / 'reporting.db').resolve()}  "
                "(crm_card, crm_events, crm_opportunity, crm_workload_snapshot)\n"
                if trello
                else ""
            ),
            soft_wrap=True,
        )
        password = secrets.token_urlsafe(12)  # a new one per demo run
        users.add_user(runtime.store, "admin", password, "admin")
        console.print(f"\nDashboard: {base}/  log in as admin / {password}", soft_wrap=True)
        if not once:
            console.print("demo running; Ctrl-C to stop")
            threading.Event().wait()
        if not ok:
            raise typer.Exit(1)
    except KeyboardInterrupt:
        pass
    finally:
        proc.stop()
        runtime.close()
        box.stop()


def _free_or_default(chosen: dict[str, int | None]) -> dict[str, int]:
    defaults = {"salesforce": 8701, "trello": 8702, "monday": 8703}
    return {name: _port(p, chosen.get(name)) for name, p in defaults.items()}


def _port(preferred: int, chosen: int | None = None) -> int:
    """``chosen`` when given (the user asked for it), else ``preferred`` if free, else 0 (any free port)."""
    if chosen is not None:
        return chosen
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            return 0
    return preferred


def _open_contract(sf: Any) -> str:
    return next((str(c["Id"]) for c in sf.records("Contract") if c.get("Status") == "Activated"), "…")


def _log_to_file(path: Path) -> Path:
    """Send crmsync's log lines to ``path`` instead of the terminal, where the live table is drawn."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    return path


def _explain_dead_letters(runtime: Runtime, console: Console) -> None:
    """Why the demo's dead letters exist: each distinct reason once, with how many it holds."""
    letters = ChangeQueue(runtime.store).dead_letters(limit=1000)
    if not letters:
        return
    locked = [letter for letter in letters if letter.error.get("kind") == "LockedRecord"]
    if locked:
        console.print(
            f"[yellow]{len(locked)} dead letter(s) on purpose:[/yellow] the demo application also sends "
            "late entries for a Fulfilled contract. Those sent while Salesforce was down could not be "
            "checked at the door (the lock asks Salesforce), so they were queued and refused at write "
            f"time: {locked[0].error.get('message')}.",
            soft_wrap=True,
        )
    others = Counter(
        f"{letter.error.get('kind')}: {letter.error.get('message')}"
        for letter in letters
        if letter.error.get("kind") != "LockedRecord"
    )
    for reason, count in others.most_common():
        console.print(f"[red]{count} dead letter(s) the demo did not expect:[/red] {reason}", soft_wrap=True)
    console.print(f"  see them: crmsync dead-letters list --url {runtime.store.url}", soft_wrap=True)


def _application(
    base: str, token: str, sf: Any, tally: Tally, entries: int, rate: float, outage: float
) -> None:
    """A stand-in for the service application: ads are created, corrected, deleted."""
    rnd = random.Random(7)
    contracts = sf.records("Contract")
    open_ids = [c["Id"] for c in contracts if c.get("Status") != "Fulfilled"]
    fulfilled = [c["Id"] for c in contracts if c.get("Status") == "Fulfilled"]
    products = ["small", "medium", "big", "gigantic"]
    live: list[str] = []
    outage_at = entries // 2 if outage > 0 else -1
    rule = None
    with Client(base, token) as client:
        for i in range(entries):
            tally.phase = "submitting"
            if i == outage_at:
                rule = sf.faults.add(path="^/services/data", error="unavailable")
                outage_end = time.monotonic() + outage
            if rule is not None and time.monotonic() >= outage_end:
                sf.faults.remove(rule.id)
                rule = None
            if rule is not None:
                tally.phase = "Salesforce DOWN (fault rule) — still accepting"
            roll = rnd.random()
            try:
                if live and roll < 0.15:
                    key = rnd.choice(live)
                    fields: dict[str, Any] = {"quantity": rnd.randint(1, 5)}
                    client.upsert("usage", key, fields)
                    prior = tally.expected.get(key) or {}
                    tally.expected[key] = {**prior, **fields}
                    tally.corrections += 1
                elif live and roll < 0.22:
                    key = live.pop(rnd.randrange(len(live)))
                    client.delete("usage", key)
                    tally.expected[key] = None
                    tally.deletions += 1
                else:
                    key = f"ad-{i:05d}"
                    fields = {
                        "contract_id": rnd.choice(open_ids),
                        "product": rnd.choice(products),
                        "quantity": 1,
                    }
                    client.upsert("usage", key, fields)
                    tally.expected[key] = fields
                    live.append(key)
                tally.submitted += 1
                if fulfilled and i % 50 == 25:
                    try:
                        client.upsert(
                            "usage",
                            f"late-{i}",
                            {"contract_id": fulfilled[0], "product": "small", "quantity": 1},
                        )
                    except LockedRecord:
                        tally.refused_locked += 1
            except CrmsyncError:
                tally.failed += 1
            time.sleep(1.0 / rate)
    if rule is not None:
        sf.faults.remove(rule.id)
    tally.phase = "draining the queue"


def _settled(runtime: Runtime) -> bool:
    stats = runtime.queue.stats()
    return stats.pending == 0 and stats.leased == 0 and stats.retrying == 0


def _summary(tally: Tally, runtime: Runtime, sf: Any) -> Table:
    stats = runtime.queue.stats()
    in_sf = len(
        [r for r in sf.records("Usage__c") if not r.get("IsDeleted") and r["Ad_Id__c"] in tally.expected]
    )
    table = Table(title=f"usage billing — {tally.phase}", show_header=False, min_width=60)
    table.add_row("entries submitted (202)", str(tally.submitted))
    table.add_row("  of which corrections / deletions", f"{tally.corrections} / {tally.deletions}")
    table.add_row("refused: contract locked (409)", str(tally.refused_locked))
    table.add_row(
        "queue: pending / retrying / in progress", f"{stats.pending} / {stats.retrying} / {stats.leased}"
    )
    table.add_row("dead letters", str(stats.dead))
    table.add_row("the application's Usage__c records in Salesforce", str(in_sf))
    table.add_row("Salesforce API calls", str(sf.calls.total))
    return table


def _verify(tally: Tally, sf: Any, console: Console) -> bool:
    """Compare what the application meant with what Salesforce holds."""
    records = {
        r["Ad_Id__c"]: r
        for r in sf.records("Usage__c")
        if not r.get("IsDeleted") and r["Ad_Id__c"] in tally.expected  # not the seed's own
    }
    want = {k: v for k, v in tally.expected.items() if v is not None}
    missing = [k for k in want if k not in records]
    extra = [k for k in records if k not in want]
    wrong = [
        k
        for k, v in want.items()
        if k in records and float(records[k]["Quantity__c"]) != float(v["quantity"])
    ]
    if not (missing or extra or wrong):
        console.print(
            f"[green]✓ Salesforce holds exactly the {len(want)} live entries the application meant.[/green]"
        )
        return True
    console.print(
        f"[red]✗ mismatch: {len(missing)} missing, {len(extra)} extra, {len(wrong)} with wrong quantity[/red]"
    )
    return False
