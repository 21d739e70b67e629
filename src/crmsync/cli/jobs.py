"""``crmsync jobs list | run``: the scheduled jobs of ``crmsync.yaml``, their runs, a run by hand."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from crmsync.cli.config import CONFIG_OPTION, load_or_exit
from crmsync.cli.store_errors import reports_store_errors
from crmsync.scheduler import claims, runs
from crmsync.scheduler.scheduler import run_job, specs_from_config
from crmsync.store.db import Store
from crmsync.store.schema import utcnow

jobs_app = typer.Typer(help="Scheduled jobs: when they run next, how they last ended; run one now.")

#: longest part of a run's message shown in the list
MESSAGE_WIDTH = 80


def register(app: typer.Typer) -> None:
    app.add_typer(jobs_app, name="jobs", no_args_is_help=True)


def _store(url: str) -> Store:
    store = Store(url)
    if store.dialect == "sqlite":
        store.upgrade()
    return store


def _time(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


@jobs_app.command("list")
@reports_store_errors
def list_(config: Path = CONFIG_OPTION) -> None:
    """List the configured jobs: cron, next run, last run and how it ended (times in UTC)."""
    cfg = load_or_exit(config)
    specs = specs_from_config(cfg)
    if not specs:
        typer.echo(f"no jobs in {cfg.path or config}: add them under `jobs:`")
        return
    now = utcnow()
    store = _store(cfg.store.url)
    try:
        last = runs.latest(store, list(specs))
        upcoming = {
            name: claims.next_run(store, name, spec.schedule, now)
            for name, spec in specs.items()
            if spec.enabled
        }
    finally:
        store.dispose()
    table = Table("name", "job", "cron", "next run (UTC)", "last run (UTC)", "status", "message")
    for name, spec in specs.items():
        run = last.get(name)
        if not spec.enabled:
            next_text = "disabled"
        else:
            next_text = _time(upcoming[name]) + (" (due)" if upcoming[name] <= now else "")
        message = (run.message or "") if run else ""
        if len(message) > MESSAGE_WIDTH:
            message = message[: MESSAGE_WIDTH - 1] + "…"
        table.add_row(
            name,
            spec.job,
            spec.cron,
            next_text,
            _time(run.started_at if run else None),
            run.status if run else "-",
            message,
        )
    Console().print(table)


@jobs_app.command("run")
@reports_store_errors
def run(
    name: str = typer.Argument(..., help="The job's name under `jobs:` in the configuration."),
    config: Path = CONFIG_OPTION,
) -> None:
    """Run one job now, with a progress bar, recorded like a scheduled run (disabled jobs too); print
    its summary; exit 1 if it fails."""
    cfg = load_or_exit(config)
    specs = specs_from_config(cfg)
    if name not in specs:
        valid = ", ".join(sorted(specs)) or "(none configured)"
        typer.secho(f"unknown job {name!r}; valid: {valid}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    store = _store(cfg.store.url)
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.fields[job]}[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    try:
        console = Console(stderr=True)
        # the bar is drawn on a terminal only (a log or a pipe gets the summary alone)
        with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
            task = bar.add_task("starting", total=None, job=name)

            def progress(done: int, total: int | None, what: str) -> None:
                bar.update(task, completed=done, total=total, description=what)

            result = run_job(store, name, specs[name], config=cfg, progress=progress)
    finally:
        store.dispose()
    if result.status != "succeeded":
        typer.secho(f"{name} failed: {result.message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    typer.echo(f"{name} succeeded: {result.message}")
