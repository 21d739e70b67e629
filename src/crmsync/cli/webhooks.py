"""``crmsync webhooks ensure | list``: the vendor webhooks the configured flows need.

For every flow whose source or target is a monday connection, the flow's board (the target's
``object``; for a monday source, the flow's ``source_object``; an id or a board's name) needs
the subscriptions of :data:`crmsync.connectors.monday.subscriptions.NEEDED_EVENTS`, delivering
to ``BASE/webhooks/monday/<connection>``. ``ensure`` lists each board's webhooks first and
creates only the missing ones, so running it twice creates nothing the second time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from crmsync.cli.config import CONFIG_OPTION, load_or_exit
from crmsync.config.models import Config, MondayConnection
from crmsync.connectors.monday.connector import MondayConnector
from crmsync.connectors.monday.subscriptions import ensure_webhooks, list_webhooks, receiver_url
from crmsync.errors import CrmsyncError

webhooks_app = typer.Typer(help="Vendor webhooks the flows need: create the missing ones, list them.")

URL_OPTION: Any = typer.Option(
    ..., "--url", help="Public base URL of the crmsync web app, e.g. https://crmsync.example.org."
)


def register(app: typer.Typer) -> None:
    app.add_typer(webhooks_app, name="webhooks")


def monday_boards(config: Config) -> dict[str, list[str]]:
    """monday connection name → the board ids its flows read or write, in file order."""
    boards: dict[str, list[str]] = {}

    def add(connection: str, board: Any) -> None:
        conn = config.connections.get(connection)
        if not isinstance(conn, MondayConnection) or board is None or not str(board).strip():
            return
        found = boards.setdefault(connection, [])
        if str(board) not in found:
            found.append(str(board))

    for flow in config.flows.values():
        add(flow.target, flow.object)
        add(flow.source, getattr(flow, "source_object", None))
    return boards


def _connector(config: Config, name: str) -> MondayConnector:
    return MondayConnector.from_config(name, config.connections[name])


def _fail(exc: CrmsyncError) -> typer.Exit:
    typer.secho(f"monday refused: {exc}", fg=typer.colors.RED, err=True)
    return typer.Exit(1)


@webhooks_app.command("ensure")
def ensure(config: Path = CONFIG_OPTION, url: str = URL_OPTION) -> None:
    """Create the webhooks the flows need and are missing (never a duplicate)."""
    cfg = load_or_exit(config)
    boards = monday_boards(cfg)
    if not boards:
        typer.echo("no flow reads or writes a monday board: nothing to do")
        return
    table = Table("connection", "board", "event", "webhook", "status")
    for name, board_ids in boards.items():
        connector = _connector(cfg, name)
        target = receiver_url(url, name)
        try:
            for named in board_ids:
                board = connector.board_id(named)
                result = ensure_webhooks(connector.client, board, target)
                for sub in result.created:
                    table.add_row(name, board, sub.event, sub.id, "created")
                for sub in result.existing:
                    table.add_row(name, board, sub.event, sub.id, "present")
        except CrmsyncError as exc:
            raise _fail(exc) from exc
        finally:
            connector.close()
    Console().print(table)


@webhooks_app.command("list")
def list_(config: Path = CONFIG_OPTION) -> None:
    """List the webhooks of every monday board the flows use."""
    cfg = load_or_exit(config)
    table = Table("connection", "board", "event", "webhook", "config")
    for name, board_ids in monday_boards(cfg).items():
        connector = _connector(cfg, name)
        try:
            for named in board_ids:
                board = connector.board_id(named)
                for sub in list_webhooks(connector.client, board):
                    table.add_row(name, board, sub.event, sub.id, str(sub.config or ""))
        except CrmsyncError as exc:
            raise _fail(exc) from exc
        finally:
            connector.close()
    Console().print(table)
