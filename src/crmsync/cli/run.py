"""``crmsync run | serve | worker | status``: the processes, and what they are doing."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from crmsync.cli.config import CONFIG_OPTION, load_or_exit
from crmsync.engine.process import Process
from crmsync.engine.runtime import Runtime

log = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("serve")(serve)
    app.command("worker")(worker)
    app.command("status")(status)


PORT_HELP = "Port to listen on (default: web.port of the configuration; 0 picks one)."


def run(
    config: Path = CONFIG_OPTION,
    host: str | None = typer.Option(None, help="Address to listen on (default: web.host)."),
    port: int | None = typer.Option(None, help=PORT_HELP),
    concurrency: int | None = typer.Option(None, help="Worker threads (default: worker.concurrency)."),
) -> None:
    """Run everything in one process: the web app (ingest, webhooks, API), workers and scheduler.

    With SQLite (the default store) the database is created or upgraded first.
    """
    cfg = load_or_exit(config)
    runtime = Runtime(cfg)
    proc = Process(runtime, web=True, workers=concurrency or cfg.worker.concurrency, host=host, port=port)
    proc.bind()
    typer.echo(f"crmsync running: http://{proc.host}:{proc.bound_port}  (store {runtime.store.shown_url})")
    try:
        proc.run()
    finally:
        runtime.close()


def serve(
    config: Path = CONFIG_OPTION,
    host: str | None = typer.Option(None, help="Address to listen on (default: web.host)."),
    port: int | None = typer.Option(None, help=PORT_HELP),
) -> None:
    """Run only the web app (no workers): run as many as needed behind a load balancer."""
    cfg = load_or_exit(config)
    runtime = Runtime(cfg)
    proc = Process(runtime, web=True, workers=0, host=host, port=port)
    proc.bind()
    typer.echo(f"crmsync serving: http://{proc.host}:{proc.bound_port}")
    try:
        proc.run()
    finally:
        runtime.close()


def worker(
    config: Path = CONFIG_OPTION,
    concurrency: int | None = typer.Option(None, help="Worker threads (default: worker.concurrency)."),
) -> None:
    """Run only workers: they claim queued changes and apply them. Stops cleanly on SIGTERM."""
    cfg = load_or_exit(config)
    runtime = Runtime(cfg)
    proc = Process(runtime, web=False, workers=concurrency or cfg.worker.concurrency)
    typer.echo(f"crmsync worker: {proc.workers} thread(s) on {runtime.store.shown_url}", err=True)
    try:
        proc.run()
    finally:
        runtime.close()


def status(
    config: Path = CONFIG_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Queue depth, age of the oldest pending change, dead letters and API budget use."""
    cfg = load_or_exit(config)
    runtime = Runtime(cfg)
    try:
        stats = runtime.queue.stats()
        budgets = runtime.ledger.budgets()
    finally:
        runtime.close()
    data = {
        "pending": stats.pending,
        "leased": stats.leased,
        "retrying": stats.retrying,
        "dead_letters": stats.dead,
        "oldest_pending_age_seconds": stats.oldest_pending_age,
        "api_budget": budgets,
    }
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    table = Table(title="crmsync status", show_header=False)
    table.add_row("pending", str(stats.pending))
    table.add_row("in progress (leased)", str(stats.leased))
    table.add_row("waiting to retry", str(stats.retrying))
    table.add_row("dead letters", str(stats.dead))
    age = stats.oldest_pending_age
    table.add_row("oldest pending", "-" if age is None else f"{age:.1f} s")
    for name, b in budgets.items():
        share = f" ({100 * b['used'] / b['limit']:.1f}%)" if b["limit"] else ""
        table.add_row(f"API budget {name}", f"{b['used']} / {b['limit']}{share}")
    Console().print(table)
