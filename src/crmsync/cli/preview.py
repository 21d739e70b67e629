"""``crmsync preview FLOW [-c FILE] [--limit N] [--json]``: what a sync would change, writing nothing.

Runs :class:`crmsync.engine.preview.Preview`: for a two-way flow, every record of the source board
compared with its linked target records; for an application flow, the changes still queued. Prints
one row per record (record, action, fields as ``current → new``) and the counts, or JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import SQLAlchemyError

from crmsync.cli.config import CONFIG_OPTION, load_or_exit
from crmsync.engine.preview import FieldChange, FlowPreview, Preview, RecordPreview
from crmsync.engine.runtime import Runtime
from crmsync.errors import ConfigError, CrmsyncError
from crmsync.redact import redact_url

FLOW_ARGUMENT: Any = typer.Argument(..., help="The flow to preview.")
ACTION_STYLES = {
    "create": "green",
    "update": "yellow",
    "upsert": "yellow",
    "delete": "red",
    "unchanged": "dim",
    "skipped": "dim",
    "locked": "magenta",
    "refused": "bold red",
}
#: longest value shown in the table (JSON shows everything)
SHOWN = 60


def register(app: typer.Typer) -> None:
    app.command("preview")(preview)


def preview(
    flow: str = FLOW_ARGUMENT,
    config: Path = CONFIG_OPTION,
    limit: int | None = typer.Option(None, "--limit", min=1, help="Look at N records at most."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show what a sync of FLOW would change, writing nothing anywhere."""
    cfg = load_or_exit(config)
    runtime = Runtime(cfg, upgrade=False)  # a preview never creates or upgrades the store
    previewer = Preview(runtime)
    try:
        result = previewer.run(flow, limit=limit)
    except ConfigError as exc:
        for problem in exc.problems or [exc.message]:
            typer.secho(problem, fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    except CrmsyncError as exc:
        typer.secho(f"preview failed: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    except SQLAlchemyError as exc:
        typer.secho(
            f"cannot read the store {redact_url(cfg.store.url, database=True)}: {type(exc).__name__}. "
            "Is the store created? crmsync db upgrade",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1) from None
    finally:
        previewer.close()
        runtime.close()
    if as_json:
        typer.echo(json.dumps(result.as_json(), indent=2, default=str))
        return
    console = Console()
    console.print(table(result))
    console.print(summary_line(result))


def table(result: FlowPreview) -> Table:
    what = "queued changes" if result.kind == "application" else "records"
    title = f"Preview of {result.flow}: {what} of {result.source} → {result.target} {result.object_name}"
    t = Table(title=Text(title), title_justify="left", show_lines=True)
    t.add_column("record", overflow="fold")
    t.add_column("action", no_wrap=True)
    t.add_column("fields", overflow="fold")
    for record in result.records:
        t.add_row(
            _record_cell(record),
            Text(record.action, style=ACTION_STYLES[record.action]),
            _fields_cell(record),
        )
    return t


def summary_line(result: FlowPreview) -> Text:
    counts = result.counts()
    parts = [f"{n} {action}" for action, n in sorted(counts.items())] or ["nothing to do"]
    line = "Would: " + ", ".join(parts) + ". Nothing was written."
    if result.limited:
        line += " (--limit reached: more records were not looked at)"
    return Text(line)


def _record_cell(record: RecordPreview) -> Text:
    text = Text(record.record)
    if record.label:
        text.append(f"\n{record.label}", style="bold")
    if record.target_id:
        text.append(f"\n→ {record.object_name} {record.target_id}", style="dim")
    return text


def _fields_cell(record: RecordPreview) -> Text:
    text = Text()
    lines: list[tuple[str, str]] = []
    if record.reason:
        lines.append((record.reason, "italic"))
    lines.extend((_field_line(c), "") for c in record.fields)
    for rel in record.related:
        if rel.action == "unchanged":
            continue
        ident = f" {rel.target_id}" if rel.target_id else ""
        lines.append((f"{rel.action} {rel.object_name}{ident}:", "bold"))
        lines.extend((f"  {_field_line(c)}", "") for c in rel.fields)
    for i, (line, style) in enumerate(lines):
        text.append(("\n" if i else "") + line, style=style)
    return text


def _field_line(change: FieldChange) -> str:
    new = _shown(change.new)
    arrow = " ← (from the target)" if change.direction == "to_source" else ""
    if change.current is None:
        return f"{change.field}: {new}{arrow}"
    return f"{change.field}: {_shown(change.current)} → {new}{arrow}"


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= SHOWN else text[: SHOWN - 1] + "…"
