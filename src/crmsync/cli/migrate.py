"""``crmsync migrate FLOW [--dry-run] [--limit N]``: backfill a flow's target (a Monday.com board)
from its source (Salesforce).

Runs :class:`crmsync.engine.migrate.Migration` with a progress bar, then prints the summary:
created, updated, skipped (already migrated, or not matching the flow's ``when``), failed (see
``crmsync log --flow FLOW``), the API calls made to each connection and the time taken. A
migration that stops (a connection refuses, a budget stays spent) prints what it did so far and
exits with status 1; running it again resumes where it stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from crmsync.cli.config import CONFIG_OPTION, load_or_exit
from crmsync.config.loader import DEFAULT_PATH
from crmsync.engine.migrate import Migration, MigrationSummary
from crmsync.engine.runtime import Runtime
from crmsync.errors import ConfigError, CrmsyncError
from crmsync.scheduler.runs import CommandRun

FLOW_ARGUMENT: Any = typer.Argument(
    ..., help="The flow to migrate: a source that exports (Salesforce) → a target that is written (monday)."
)


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate)


def migrate(
    flow: str = FLOW_ARGUMENT,
    config: Path = CONFIG_OPTION,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Read and map every record, write nothing: show what a migration would do."
    ),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Write at most N records (records already migrated do not count)."
    ),
    batch: int | None = typer.Option(
        None, "--batch", min=1, help="Records per batch (default: as many as the target takes in one call)."
    ),
) -> None:
    """Backfill a flow's target (a monday board) from its source (Salesforce): resumable, batched
    inside the target's budget."""
    cfg = load_or_exit(config)
    console = Console()
    runtime = Runtime(cfg)
    migration: Migration | None = None
    recorded: CommandRun | None = None
    try:
        migration = Migration(runtime, flow, dry_run=dry_run, limit=limit, batch=batch)
        total = migration.count()
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=False) as bar:
            what = f"{flow}: {migration.source_object} → {cfg.flows[flow].object}"
            if dry_run:
                what = f"dry run of {what}"
            task = bar.add_task(what, total=total)
            # the dashboard's Jobs page shows the run too (any replica reads it from the store)
            recorded = CommandRun(runtime.store, f"migrate:{flow}")
            run = recorded

            def advance(n: int) -> None:
                bar.advance(task, n)
                run.advance(n, total, what)

            migration.progress = advance

            reason = migration.waiting_for()

            def waiting(seconds: float | None) -> None:
                note = f"{what} — waiting {seconds:.0f} s for {reason}" if seconds else what
                bar.update(task, description=note)

            migration.waiting = waiting
            summary = migration.run()
            recorded.finish("succeeded", summary_line(summary))
    except ConfigError as exc:
        if recorded is not None:
            recorded.finish("failed", exc.message)
        for problem in exc.problems or [exc.message]:
            typer.secho(problem, fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.secho("\nmigration interrupted", fg=typer.colors.YELLOW, err=True)
        if recorded is not None and migration is not None:
            recorded.finish("failed", f"interrupted: {summary_line(migration.summary)}")
        if migration is not None:
            console.print(summary_table(migration.summary, stopped=True))
        typer.echo(
            f"what was written is recorded; to resume, run the same command again: {_command(flow, config)}",
            err=True,
        )
        raise typer.Exit(130) from None
    except CrmsyncError as exc:
        typer.secho(f"migration stopped: {exc}", fg=typer.colors.RED, err=True)
        if recorded is not None and migration is not None:
            recorded.finish("failed", f"stopped: {exc}; {summary_line(migration.summary)}")
        if migration is not None:
            console.print(summary_table(migration.summary, stopped=True))
            typer.echo("what was written is recorded: run the same command again to resume", err=True)
        raise typer.Exit(1) from None
    finally:
        runtime.close()
    console.print(summary_table(summary))
    if dry_run and migration is not None:
        _dry_run_hint(console, migration, flow, config)
        return
    if summary.failed:
        typer.secho(
            f"{summary.failed} records failed: see `crmsync log --flow {flow}`", fg=typer.colors.YELLOW
        )


def summary_table(summary: MigrationSummary, *, stopped: bool = False) -> Table:
    """The end-of-run table: counts, API calls per connection, time taken."""
    title = (
        "Dry run (nothing written)" if summary.dry_run else "Migration stopped" if stopped else "Migration"
    )
    table = Table("", "records", title=title, title_justify="left")
    would = "would be written" if summary.dry_run else None
    table.add_row("created", str(summary.created) + (f" ({would})" if would else ""))
    table.add_row("updated", str(summary.updated))
    table.add_row("skipped", str(summary.skipped))
    table.add_row("failed", str(summary.failed))
    for connection, calls in summary.api_calls.items():
        table.add_row(f"API calls: {connection}", str(calls))
    table.add_row("seconds", f"{summary.seconds:.1f}")
    rate = summary.written / summary.seconds if summary.seconds > 0 and not summary.dry_run else 0.0
    if rate:
        table.add_row("records/s", f"{rate:.0f}")
    return table


def summary_line(summary: MigrationSummary) -> str:
    """The summary on one line (what the dashboard shows of a run)."""
    counts = (
        f"created {summary.created}, updated {summary.updated}, skipped {summary.skipped}, "
        f"failed {summary.failed}"
    )
    calls = ", ".join(f"{name} {n}" for name, n in summary.api_calls.items())
    line = f"{'dry run (nothing written): ' if summary.dry_run else ''}{counts}"
    return line + (f"; API calls: {calls}" if calls else "") + f"; {summary.seconds:.1f} s"


def _command(flow: str, config: Path) -> str:
    return f"crmsync migrate {flow}" + ("" if config == DEFAULT_PATH else f" -c {config}")


def _dry_run_hint(console: Console, migration: Migration, flow: str, config: Path) -> None:
    """What the dry run found that the target would refuse, and what to run next."""
    problems = migration.label_problems
    if problems:
        target = migration.flow.target
        table = Table(
            "column", "value", "records", "the column's labels", title=f"Values {target} would refuse"
        )
        for (column, title, value, labels), count in problems.most_common():
            table.add_row(f"{column} ({title})", repr(value), str(count), ", ".join(labels) or "(none)")
        console.print(table)
        console.print(
            "fix the flow's value_map (or add the labels to the board), run the dry run again, then "
            f"migrate: {_command(flow, config)}",
            soft_wrap=True,
        )
    elif migration.summary.failed:
        console.print(
            f"{migration.summary.failed} records would fail in a transform: see them with "
            f"`{_command(flow, config)} --dry-run -v`",
            soft_wrap=True,
        )
    else:
        console.print(f"nothing would be refused; to migrate: {_command(flow, config)}", soft_wrap=True)
