"""``crmsync webhooks ensure | list``: the vendor webhooks the configured flows need.

For every flow whose source or target is a monday connection, the flow's board (the target's
``object``; for a monday source, the flow's ``source_object``; an id or a board's name) needs
the subscriptions of :data:`crmsync.connectors.monday.subscriptions.NEEDED_EVENTS`. ``ensure``
lists each board's webhooks first and creates only the missing ones, so running it twice creates
nothing the second time. Where they deliver depends on the connection's protection
(:func:`~crmsync.connectors.monday.subscriptions.webhook_auth`): ``BASE/webhooks/monday/<name>``
for signed webhooks (created with ``app_token``), ``BASE/webhooks/monday/<name>/<secret>`` for
those a personal token creates; the secret is the connection's, kept in the store.

monday checks the URL when a webhook is created, so crmsync must already be serving it
(``crmsync run``) at ``BASE``: by default the ``web`` section's address, else ``--url``.
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from crmsync.cli.config import CONFIG_OPTION, load_or_exit
from crmsync.config.models import Config, MondayConnection
from crmsync.connectors.monday.connector import MondayConnector
from crmsync.connectors.monday.settings import MondaySettings
from crmsync.connectors.monday.subscriptions import (
    UNREACHABLE,
    ensure_webhooks,
    list_webhooks,
    receiver_url,
    webhook_auth,
)
from crmsync.errors import CrmsyncError
from crmsync.store import webhooks as receivers
from crmsync.store.db import Store

webhooks_app = typer.Typer(help="Vendor webhooks the flows need: create the missing ones, list them.")

URL_OPTION: Any = typer.Option(
    None,
    "--url",
    help=(
        "Public base URL of the crmsync web app as monday reaches it, e.g. https://crmsync.example.org "
        "(default: the web section's host and port)."
    ),
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


def _secret(conn: MondayConnection, name: str) -> str | None:
    return None if getattr(conn, name) is None else getattr(conn, name).get_secret_value()


def _connector(config: Config, name: str, *, for_webhooks: bool = False) -> MondayConnector:
    """The connection's connector; ``for_webhooks``: with its app_token when it has one (monday
    signs the deliveries of webhooks an app's token creates)."""
    conn = config.connections[name]
    assert isinstance(conn, MondayConnection)
    settings = MondaySettings.from_object(conn)
    app_token = _secret(conn, "app_token")
    if for_webhooks and app_token:
        settings = dataclasses.replace(settings, token=app_token)
    return MondayConnector(name, settings=settings)


def default_base_url(config: Config) -> str:
    """The web section's address, as a local client reaches it."""
    host = config.web.host if config.web.host not in ("0.0.0.0", "::", "") else "127.0.0.1"  # noqa: S104
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{config.web.port}"


def _open_store(config: Config) -> Store:
    store = Store(config.store.url)
    if store.dialect == "sqlite":
        store.upgrade()  # as `crmsync run` does
    return store


def _fail(exc: CrmsyncError) -> typer.Exit:
    typer.secho(f"monday refused: {exc}", fg=typer.colors.RED, err=True)
    return typer.Exit(1)


def _unreachable(exc: CrmsyncError, base: str, given: bool) -> typer.Exit:
    typer.secho(f"monday refused: {exc}", fg=typer.colors.RED, err=True)
    typer.secho(
        f"monday could not reach {base}: when a webhook is created, monday sends a challenge to its "
        "callback URL, which crmsync must answer. Start crmsync first (`crmsync run`, or "
        "`crmsync serve`), then run this again"
        + (
            "; check that --url is the address monday reaches crmsync at."
            if given
            else f", or pass --url with the public address monday reaches it at (default: {base})."
        ),
        fg=typer.colors.RED,
        err=True,
    )
    return typer.Exit(1)


def protection_report(config: Config, name: str) -> list[tuple[str, bool]]:
    """What ``crmsync check --connect`` says of a monday connection's webhooks: ``(line, warning)``.

    Which protection is in force, what in the settings does not fit it, and, for signed webhooks,
    any subscription on the flows' boards that an app did not create (monday does not sign its
    deliveries, so each would be refused).
    """
    conn = config.connections[name]
    assert isinstance(conn, MondayConnection)
    auth = webhook_auth(_secret(conn, "app_token"), _secret(conn, "signing_secret"))
    lines = [(f"webhooks: {auth.describe()}", False)]
    lines += [(warning, True) for warning in auth.warnings]
    if auth.protection != "signed":
        return lines
    connector = _connector(config, name, for_webhooks=True)
    try:
        for named in monday_boards(config).get(name, []):
            board = connector.board_id(named)
            signed = {s.id for s in list_webhooks(connector.client, board, app_only=True)}
            unsigned = [s for s in list_webhooks(connector.client, board) if s.id not in signed]
            if unsigned:
                events = ", ".join(sorted({s.event for s in unsigned}))
                lines.append(
                    (
                        f"board {named}: {len(unsigned)} webhook(s) ({events}) were not created by the app, "
                        "so monday does not sign their deliveries and crmsync refuses them: delete them "
                        "in monday, then run `crmsync webhooks ensure`",
                        True,
                    )
                )
    finally:
        connector.close()
    return lines


@webhooks_app.command("ensure")
def ensure(config: Path = CONFIG_OPTION, url: str | None = URL_OPTION) -> None:
    """Create the webhooks the flows need and are missing (never a duplicate)."""
    cfg = load_or_exit(config)
    boards = monday_boards(cfg)
    if not boards:
        typer.echo("no flow reads or writes a monday board: nothing to do")
        return
    base = url or default_base_url(cfg)
    attempt = uuid.uuid4().hex  # this run's requests are new ones, never a replay of a failed run
    table = Table("connection", "board", "event", "webhook", "status")
    store = _open_store(cfg)
    try:
        for name, board_ids in boards.items():
            conn = cfg.connections[name]
            assert isinstance(conn, MondayConnection)
            auth = webhook_auth(_secret(conn, "app_token"), _secret(conn, "signing_secret"))
            for warning in auth.warnings:
                typer.secho(f"{name}: {warning}", fg=typer.colors.YELLOW, err=True)
            secret = receivers.receiver(store, name).url_secret if auth.protection == "secret_url" else None
            target = receiver_url(base, name, secret)
            receivers.set_callback_url(store, name, target)
            connector = _connector(cfg, name, for_webhooks=True)
            try:
                for named in board_ids:
                    board = connector.board_id(named)
                    result = ensure_webhooks(connector.client, board, target, attempt=attempt)
                    for sub in result.created:
                        table.add_row(name, board, sub.event, sub.id, "created")
                    for sub in result.existing:
                        table.add_row(name, board, sub.event, sub.id, "present")
            except CrmsyncError as exc:
                if UNREACHABLE.lower() in str(exc).lower():
                    raise _unreachable(exc, base, url is not None) from exc
                raise _fail(exc) from exc
            finally:
                connector.close()
            typer.echo(f"{name}: {auth.describe()}")
    finally:
        store.dispose()
    Console().print(table)


@webhooks_app.command("list")
def list_(config: Path = CONFIG_OPTION) -> None:
    """List the webhooks of every monday board the flows use."""
    cfg = load_or_exit(config)
    table = Table("connection", "board", "event", "webhook", "config")
    for name, board_ids in monday_boards(cfg).items():
        connector = _connector(cfg, name, for_webhooks=True)
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
