"""``crmsync log``: what happened to a record, in every system it lives in, newest first.

Reads the sync log (:mod:`crmsync.store.synclog`) and the links table (:mod:`crmsync.store.links`).
Given ``--record ID``, the id may be from either side of a link (a Monday item id, a Salesforce
id, an application's key): its counterparts are looked up, and the lines of all of them are
shown together, so one command traces a record across systems.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from crmsync.cli.config import CONFIG_OPTION, load_or_exit
from crmsync.cli.store_errors import reports_store_errors
from crmsync.cli.text import printable
from crmsync.store.db import Store, StoreOrConnection, connection
from crmsync.store.links import Link
from crmsync.store.schema import links
from crmsync.store.synclog import LogEntry, query

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
        typer.echo(json.dumps(_as_json(record, found_links, entries), indent=2))
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


def find_links(db: StoreOrConnection, record_id: str, flow: str | None = None) -> list[Link]:
    """Every link with ``record_id`` on either side (as a source key or as a target id)."""
    c = links.c
    stmt = (
        sa.select(c.flow, c.source_system, c.source_key, c.target_system, c.target_id)
        .where(sa.or_(c.source_key == record_id, c.target_id == record_id))
        .order_by(c.flow, c.id)
    )
    if flow is not None:
        stmt = stmt.where(c.flow == flow)
    with connection(db, write=False) as conn:
        return [Link(*row) for row in conn.execute(stmt)]


def trace(
    db: StoreOrConnection, *, flow: str | None = None, record: str | None = None, limit: int = 50
) -> tuple[list[Link], list[LogEntry]]:
    """The links of ``record`` (none without one) and the newest ``limit`` sync log lines of the
    record and of its counterparts (or of everything, of ``flow`` if given), newest first."""
    if record is None:
        return [], query(db, flow, None, limit)
    found = find_links(db, record, flow)
    keys = {record} | {link.source_key for link in found} | {link.target_id for link in found}
    merged: dict[int | None, LogEntry] = {}
    for key in sorted(keys):
        for entry in query(db, flow, key, limit):
            merged[entry.id] = entry
    newest_first = sorted(merged.values(), key=lambda e: (e.at, e.id or 0), reverse=True)
    return found, newest_first[:limit]


def _as_json(record: str | None, found: list[Link], entries: list[LogEntry]) -> dict[str, Any]:
    lines = []
    for entry in entries:
        line = asdict(entry)
        line["at"] = entry.at.isoformat()
        line["change_ids"] = list(entry.change_ids) if entry.change_ids is not None else None
        lines.append(line)
    return {"record": record, "links": [asdict(link) for link in found], "entries": lines}


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
