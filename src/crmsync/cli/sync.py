"""``crmsync sync FLOW [-c FILE] [--wait S] [--json]``: apply what ``crmsync preview`` shows, once.

Runs :class:`crmsync.engine.sync.InitialSync`: reads both sides, queues one change per record that
is out of step (stable delivery ids: a rerun queues nothing twice) and applies them here, with a
progress bar; then prints what was created, updated, skipped or failed on each side. Ctrl-C stops
between batches: what is queued stays queued, and running the command again resumes.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from crmsync.cli.config import CONFIG_OPTION, load_or_exit
from crmsync.engine.runtime import Runtime
from crmsync.engine.sync import InitialSync, SideCounts, SyncSummary
from crmsync.errors import ConfigError, CrmsyncError
from crmsync.scheduler.runs import CommandRun

FLOW_ARGUMENT: Any = typer.Argument(..., help="The two-way flow to sync.")


def register(app: typer.Typer) -> None:
    app.command("sync")(sync)


def sync(
    flow: str = FLOW_ARGUMENT,
    config: Path = CONFIG_OPTION,
    wait: float = typer.Option(
        60.0, "--wait", min=0, help="Seconds to wait for changes that are retrying before stopping."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON (no progress bar)."),
) -> None:
    """Apply what `crmsync preview FLOW` shows: existing records of both sides brought in step.

    Exits 1 when a record failed (see `crmsync dead-letters list`) or is still waiting to retry.
    """
    cfg = load_or_exit(config)
    runtime = Runtime(cfg)
    stop = threading.Event()
    console = Console(stderr=True)
    try:
        with Progress(
            TextColumn("[bold]sync {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=as_json,
            transient=False,
        ) as bar:
            task: TaskID = bar.add_task(flow, total=None)
            # the dashboard's Jobs page shows the run too (any replica reads it from the store)
            recorded = CommandRun(runtime.store, f"sync:{flow}")

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)
                recorded.progress(done, total, f"{flow}: changes applied")

            try:
                summary = InitialSync(runtime).run(flow, stop=stop, wait=wait, progress=progress)
            except KeyboardInterrupt:
                stop.set()
                recorded.finish("failed", "interrupted: what is queued stays queued")
                typer.secho(f"stopped: what is queued stays queued; `crmsync sync {flow}` resumes", err=True)
                raise typer.Exit(130) from None
            except CrmsyncError as exc:
                recorded.finish("failed", str(exc))
                raise
            recorded.finish(
                "succeeded" if summary.complete else "failed",
                summary_line(summary),
            )
    except ConfigError as exc:
        for problem in exc.problems or [exc.message]:
            typer.secho(problem, fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    except CrmsyncError as exc:
        typer.secho(f"sync {flow} failed: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    finally:
        runtime.close()
    if as_json:
        typer.echo(json.dumps(summary.as_json(), indent=2))
    else:
        _print(summary)
    failed = summary.to_target.failed + summary.to_source.failed
    if failed or not summary.complete:
        raise typer.Exit(1)


def summary_line(summary: SyncSummary) -> str:
    """The summary on one line (what the dashboard shows of a run)."""

    def side(label: str, counts: SideCounts) -> str:
        return f"{label}: " + ", ".join(
            f"{name} {getattr(counts, name)}"
            for name in ("created", "updated", "skipped", "failed", "waiting")
        )

    line = f"{side('to the target', summary.to_target)}; {side('back to the source', summary.to_source)}"
    return line if summary.complete else f"{line}; some changes are still queued"


def _print(summary: SyncSummary) -> None:
    table = Table(title=f"crmsync sync {summary.flow}")
    table.add_column("direction")
    for name in ("created", "updated", "skipped", "failed", "waiting"):
        table.add_column(name, justify="right")
    for label, side in (("to the target", summary.to_target), ("back to the source", summary.to_source)):
        table.add_row(
            label, *(str(getattr(side, n)) for n in ("created", "updated", "skipped", "failed", "waiting"))
        )
    console = Console()
    console.print(table)
    if summary.to_target.failed or summary.to_source.failed:
        console.print(
            "Failed records are dead letters: `crmsync dead-letters list --flow " + summary.flow + "`"
        )
    if not summary.complete:
        console.print(
            f"Some changes are still queued: `crmsync sync {summary.flow}` (or `crmsync run`) finishes them."
        )
