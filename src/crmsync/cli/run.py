"""``crmsync run | serve | worker | scheduler | status``: the processes, and what they are doing."""

from __future__ import annotations

import errno
import json
import logging
import socket
import threading
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from crmsync.alerts.checks import AUTH
from crmsync.cli.config import CONFIG_OPTION, load_or_exit
from crmsync.cli.store_errors import reports_store_errors
from crmsync.cli.text import printable
from crmsync.engine.queue import QueueStats
from crmsync.engine.readiness import Readiness, blockers
from crmsync.engine.runtime import Runtime
from crmsync.engine.sync import initial_syncs
from crmsync.service.process import Process
from crmsync.store import processes
from crmsync.store import webhooks as webhook_receivers
from crmsync.store.schema import utcnow

log = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    app.command("run")(reports_store_errors(run))
    app.command("serve")(reports_store_errors(serve))
    app.command("worker")(reports_store_errors(worker))
    app.command("scheduler")(reports_store_errors(scheduler))
    app.command("status")(reports_store_errors(status))


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
    _bind(proc, runtime)
    typer.echo(f"crmsync running: http://{proc.host}:{proc.bound_port}  (store {runtime.store.shown_url})")
    if proc.workers:  # two-way flows that never synced first apply what `crmsync preview` shows
        threading.Thread(
            target=initial_syncs, args=(runtime, proc.stopping), name="initial-sync", daemon=True
        ).start()
    try:
        proc.run()
    finally:
        runtime.close()


def _bind(proc: Process, runtime: Runtime) -> None:
    """Open the listening socket; an address already in use is one line naming it and ``--port``."""
    try:
        proc.bind()
    except OSError as exc:
        runtime.close()
        if exc.errno == errno.EADDRINUSE:
            typer.secho(
                f"crmsync: port {proc.port} on {proc.host} is already in use (another crmsync?): "
                "stop that process, or choose another port with --port (or web.port in crmsync.yaml)",
                fg=typer.colors.RED,
                err=True,
            )
        elif exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
            typer.secho(
                f"crmsync: cannot listen on {proc.host}: no such address on this machine ({exc.strerror}): "
                "choose another with --host (or web.host in crmsync.yaml)",
                fg=typer.colors.RED,
                err=True,
            )
        else:
            typer.secho(
                f"crmsync: cannot listen on {proc.host}:{proc.port}: {exc.strerror or exc}",
                fg=typer.colors.RED,
                err=True,
            )
        raise typer.Exit(1) from None


def serve(
    config: Path = CONFIG_OPTION,
    host: str | None = typer.Option(None, help="Address to listen on (default: web.host)."),
    port: int | None = typer.Option(None, help=PORT_HELP),
) -> None:
    """Run only the web app (no workers): run as many as needed behind a load balancer."""
    cfg = load_or_exit(config)
    runtime = Runtime(cfg)
    proc = Process(runtime, web=True, workers=0, host=host, port=port)
    _bind(proc, runtime)
    typer.echo(f"crmsync serving: http://{proc.host}:{proc.bound_port}")
    try:
        proc.run()
    finally:
        runtime.close()


def worker(
    config: Path = CONFIG_OPTION,
    concurrency: int | None = typer.Option(None, help="Worker threads (default: worker.concurrency)."),
    with_scheduler: bool = typer.Option(
        True,
        "--scheduler/--no-scheduler",
        help="Also fire the cron jobs (off when `crmsync scheduler` runs them).",
    ),
    reconcile_interval: float = typer.Option(
        60.0,
        min=0.1,
        help="Seconds between two reads of each webhook source's boards: a lost webhook is caught "
        "within this (and within three times this when the process reading them stops).",
    ),
) -> None:
    """Run only workers, with the pollers, reconcilers and alert checks: they claim queued changes and
    apply them. Run as many as needed against one store. Stops cleanly on SIGTERM."""
    cfg = load_or_exit(config)
    runtime = Runtime(cfg)
    proc = Process(
        runtime,
        web=False,
        workers=concurrency or cfg.worker.concurrency,
        scheduler=with_scheduler,
        reconcile_interval=reconcile_interval,
    )
    typer.echo(f"crmsync worker: {proc.workers} thread(s) on {runtime.store.shown_url}", err=True)
    try:
        proc.run()
    finally:
        runtime.close()


def scheduler(config: Path = CONFIG_OPTION) -> None:
    """Run only the scheduler: fire the configured cron jobs. Run as many as needed against one store:
    each occurrence of a job fires once. Stops cleanly on SIGTERM."""
    cfg = load_or_exit(config)
    runtime = Runtime(cfg)
    proc = Process(runtime, web=False, workers=0, scheduler=True)
    typer.echo(f"crmsync scheduler: {len(cfg.jobs)} job(s) on {runtime.store.shown_url}", err=True)
    try:
        proc.run()
    finally:
        runtime.close()


def status(
    config: Path = CONFIG_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Queue depth, age of the oldest pending change, dead letters, API budget use, the live processes
    and what each holds, refused logins and paused flows (exit status 1 while a login is refused or a
    flow is paused)."""
    cfg = load_or_exit(config)
    runtime = Runtime(cfg)
    try:
        stats = runtime.queue.stats()
        budgets = runtime.ledger.budgets()
        shared = runtime.ledger.shared_budgets()
        found = blockers(runtime.store)
        refused = [r for r in webhook_receivers.receivers(runtime.store) if r.refused]
        running = processes.live(runtime.store)
    finally:
        runtime.close()
    data = {
        "pending": stats.pending,
        "leased": stats.leased,
        "retrying": stats.retrying,
        "dead_letters": stats.dead,
        "oldest_pending_age_seconds": stats.oldest_pending_age,
        "api_budget": budgets,
        "shared_budgets": shared,
        "login_refused": {p.key.removeprefix(AUTH): p.body for p in found.login_refused},
        "paused_flows": {
            p.flow: {"connection": p.connection, "reason": p.reason, "since": p.paused_at.isoformat()}
            for p in found.paused
        },
        "processes": [
            {
                "id": p.id,
                "host": p.host,
                "pid": p.pid,
                "role": p.role,
                "started": p.started_at.isoformat(),
                "last_beat": p.beat_at.isoformat(),
                "leased_changes": p.leased_changes,
                "leases": list(p.leases),
                **p.details,
            }
            for p in running
        ],
        "webhooks_refused": {
            r.connection: {
                "count": r.refused,
                "last": r.refused_at.isoformat() if r.refused_at else None,
                "reason": r.refused_reason,
            }
            for r in refused
        },
    }
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        table = _status_table(stats, budgets, found)
        for b in shared:
            share = f" ({100 * b['used'] / b['limit']:.1f}%)" if b["limit"] else ""
            table.add_row(
                Text(f"API budget {printable(b['connection'])} ({printable(b['window'])})"),
                f"{b['used']} / {b['limit']}{share}",
            )
        now = utcnow()
        for p in running:
            held = [f"{p.leased_changes} change(s) leased", *p.leases]
            table.add_row(
                Text(f"process {printable(p.host)}:{p.pid} ({p.role})"),
                Text(
                    f"since {p.started_at:%Y-%m-%d %H:%M:%S} UTC, beat "
                    f"{max(0.0, (now - p.beat_at).total_seconds()):.0f} s ago; holds {', '.join(held)}"
                ),
            )
        for r in refused:
            last = f"{r.refused_at:%Y-%m-%d %H:%M:%S} UTC" if r.refused_at else "-"
            table.add_row(
                Text(f"webhooks refused: {printable(r.connection)}", style="bold red"),
                Text(f"{r.refused} (last {last}: {printable(r.refused_reason or '')})"),
            )
        Console().print(table)
    if not found.ready:
        raise typer.Exit(1)


def _status_table(stats: QueueStats, budgets: dict[str, dict[str, Any]], found: Readiness) -> Table:
    table = Table(title="crmsync status", show_header=False)
    table.add_row("pending", str(stats.pending))
    table.add_row("in progress (leased)", str(stats.leased))
    table.add_row("waiting to retry", str(stats.retrying))
    table.add_row("dead letters", str(stats.dead))
    age = stats.oldest_pending_age
    table.add_row("oldest pending", "-" if age is None else f"{age:.1f} s")
    for name, b in budgets.items():
        share = f" ({100 * b['used'] / b['limit']:.1f}%)" if b["limit"] else ""
        table.add_row(Text(f"API budget {printable(name)}"), f"{b['used']} / {b['limit']}{share}")
    for problem in found.login_refused:
        first = (problem.body.splitlines() or [problem.title])[0]
        table.add_row(
            Text(f"login refused: {printable(problem.key.removeprefix(AUTH))}", style="bold red"),
            Text(printable(first)),
        )
    table.add_row("paused flows", Text(str(len(found.paused)), style="bold red" if found.paused else ""))
    for pause in found.paused:
        since = f"since {pause.paused_at:%Y-%m-%d %H:%M:%S} UTC"
        table.add_row(
            Text(f"  {printable(pause.flow)} ({printable(pause.connection)})", style="red"),
            Text(f"{printable(pause.reason)} ({since})"),
        )
    return table
