"""``crmsync log``: what happened to a record, in every system it lives in, newest first.

Reads the sync log and the links table through :mod:`crmsync.engine.operations` (the dashboard's
Trace page runs the same code).
Given ``--record ID``, the id may be from either side of a link (a Monday item id, a Salesforce
id, an application's key): its counterparts are looked up, and the lines of all of them are
shown together, so one command traces a record across systems.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from crmsync.cli.config import CONFIG_OPTION, load_or_exit
from crmsync.cli.store_errors import reports_store_errors
from crmsync.cli.text import printable
from crmsync.engine.operations import find_links, trace, trace_as_json
from crmsync.store.db import Store
from crmsync.store.links import Link
from crmsync.store.synclog import LogEntry

__all__ = ["find_links", "log", "trace"]

OUTCOME_STYLES = {
    "applied": "green",
    "received": "cyan",
    "skipped": "dim",
    "retry": "yellow",
    "conflict": "magenta",
    "refused": "red",
    "dead": "bold red",
}


def register(app: typer.Typer) -> None:
    app.command("log")(reports_store_errors(log))


def log(
    config: Path = CONFIG_OPTION,
    flow: str | None = typer.Option(None, "--flow", help="Only this flow."),
    record: str | None = typer.Option(
        None, "--record", help="A record id on either side (source key or target id); its counterparts too."
    ),
    limit: int = typer.Option(50, "--limit", min=1, help="Most lines shown."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Trace records across systems: the sync log, newest first, and the record's links."""
    cfg = load_or_exit(config)
    store = Store(cfg.store.url)
    try:
        found_links, entries = trace(store, flow=flow, record=record, limit=limit)
    finally:
        store.dispose()
    if as_json:
        typer.echo(json.dumps(trace_as_json(record, found_links, entries), indent=2))
        return
    console = Console()
    if record is not None:
        if not found_links and not entries:
            typer.echo(
                f"No record {record!r} in the sync log or the links" + (f" of flow {flow}." if flow else ".")
            )
            return
        console.print(_links_table(record, found_links))
    if not entries:
        typer.echo("No sync log lines" + (f" for flow {flow}." if flow else "."))
        return
    console.print(_entries_table(entries, limit))


def _links_table(record: str, found: list[Link]) -> Table:
    table = Table(title=Text(f"Record {printable(record)}"), title_justify="left")
    table.add_column("flow")
    table.add_column("source")
    table.add_column("")
    table.add_column("target")
    if not found:
        table.add_row("-", Text(printable(record)), "", "(not linked)")
    for link in found:
        source, target = f"{link.source_system} {link.source_key}", f"{link.target_system} {link.target_id}"
        table.add_row(Text(printable(link.flow)), Text(printable(source)), "→", Text(printable(target)))
    return table


def _entries_table(entries: list[LogEntry], limit: int) -> Table:
    more = " (limit reached: --limit N shows more)" if len(entries) >= limit else ""
    table = Table(title=f"Sync log, newest first{more}", title_justify="left")
    for name in ("time (UTC)", "flow", "record", "operation", "from → to", "outcome", "target id", "try"):
        table.add_column(name, no_wrap=name in ("time (UTC)", "outcome"))
    table.add_column("message", overflow="fold")
    for e in entries:
        route = " → ".join(part for part in (e.source, e.target) if part)
        if e.target and not e.source:
            route = f"→ {e.target}"
        cells = [
            f"{e.at:%Y-%m-%d %H:%M:%S}",
            e.flow,
            e.record_key,
            e.operation or "",
            route,
            e.outcome,
            e.target_id or "",
            "" if e.attempt is None else str(e.attempt),
            e.message or "",
        ]
        # Text, not markup: a vendor message such as "[INVALID_FIELD]" is shown as it is, and
        # control characters as their escapes
        table.add_row(
            *(
                Text(printable(cell), style=OUTCOME_STYLES.get(e.outcome, "") if i == 5 else "")
                for i, cell in enumerate(cells)
            )
        )
    return table
