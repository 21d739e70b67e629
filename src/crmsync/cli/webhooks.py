"""``crmsync webhooks ensure | list``: the vendor webhooks the configured flows need.

For every flow whose source or target is a connection whose connector is a
:class:`~crmsync.connectors.capabilities.WebhookSource`, the flow's object there (the target's
``object``; for a source, the flow's ``source_object``; an id or, for monday, a board's name)
needs the connector's subscriptions. ``ensure`` lists each object's webhooks first and creates only
the missing ones, so running it twice creates nothing the second time. Where they deliver depends
on the connection's protection (``WebhookSource.protection``; for monday:
``BASE/webhooks/monday/<name>`` for signed webhooks, created with ``app_token``, and
``BASE/webhooks/monday/<name>/<secret>`` for those a personal token creates); the secret is the
connection's, kept in the store.

The vendor checks the URL when a webhook is created, so crmsync must already be serving it
(``crmsync run``) at ``BASE``: by default the ``web`` section's address, else ``--url``.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from crmsync.cli.config import CONFIG_OPTION, load_or_exit
from crmsync.config.models import Config
from crmsync.connectors import registry
from crmsync.connectors.base import Connector
from crmsync.connectors.capabilities import Budgeted, WebhookSource, offers, require
from crmsync.connectors.monday.subscriptions import UNREACHABLE
from crmsync.errors import CallbackUnreachable, CrmsyncError
from crmsync.store import webhooks as receivers
from crmsync.store.db import Store

webhooks_app = typer.Typer(help="Vendor webhooks the flows need: create the missing ones, list them.")

URL_OPTION: Any = typer.Option(
    None,
    "--url",
    help=(
        "Public base URL of the crmsync web app as the vendor reaches it, e.g. https://crmsync.example.org "
        "(default: the web section's host and port)."
    ),
)


def register(app: typer.Typer) -> None:
    app.add_typer(webhooks_app, name="webhooks")


def receiving_objects(config: Config) -> dict[str, list[str]]:
    """Connection name → the objects its flows read or write, for every connection whose connector
    receives webhooks, in file order."""
    objects: dict[str, list[str]] = {}

    def add(connection: str, name: Any) -> None:
        conn = config.connections.get(connection)
        if conn is None or name is None or not str(name).strip():
            return
        if not offers(registry.connector_class(conn.type), WebhookSource):
            return
        found = objects.setdefault(connection, [])
        if str(name) not in found:
            found.append(str(name))

    for flow in config.flows.values():
        add(flow.target, flow.object)
        add(flow.source, flow.source_object)
    return objects


#: the name this command had when only monday.com received webhooks
monday_boards = receiving_objects


def _connector(config: Config, name: str, store: Store | None = None) -> tuple[Connector, WebhookSource]:
    """The connection's connector, and the same as a webhook source; with ``store``, its API
    budget is the one every crmsync process counts (a running crmsync's calls and these together)."""
    connector = registry.create(name, config.connections[name])
    if store is not None and isinstance(connector, Budgeted):
        connector.attach_store(store)
    return connector, require(connector, WebhookSource, f"connection {name!r}")


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


def _fail(exc: CrmsyncError, vendor: str) -> typer.Exit:
    typer.secho(f"{vendor} refused: {exc}", fg=typer.colors.RED, err=True)  # (the vendor's answer)
    return typer.Exit(1)


def _unreachable(exc: CrmsyncError, vendor: str, base: str, given: bool) -> typer.Exit:
    typer.secho(f"{vendor} refused: {exc}", fg=typer.colors.RED, err=True)
    typer.secho(
        f"{vendor} could not reach {base}: when a webhook is created, {vendor} checks its "
        "callback URL, which crmsync must answer. Start crmsync first (`crmsync run`, or "
        "`crmsync serve`), then run this again"
        + (
            f"; check that --url is the address {vendor} reaches crmsync at."
            if given
            else f", or pass --url with the public address {vendor} reaches it at (default: {base})."
        ),
        fg=typer.colors.RED,
        err=True,
    )
    return typer.Exit(1)


def protection_report(config: Config, name: str) -> list[tuple[str, bool]]:
    """What ``crmsync check --connect`` says of a connection's webhooks: ``(line, warning)``.

    Which protection is in force, what in the settings does not fit it, and, for signed webhooks,
    any subscription on the flows' objects that is not signed (each delivery would be refused).
    """
    connector, source = _connector(config, name)
    try:
        protection = source.protection()
        lines = [(f"webhooks: {protection.description}", False)]
        lines += [(warning, True) for warning in protection.warnings]
        if protection.kind != "signed":
            return lines
        for named in receiving_objects(config).get(name, []):
            signed = {s.id for s in source.list_subscriptions(named, signed_only=True)}
            unsigned = [s for s in source.list_subscriptions(named) if s.id not in signed]
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
    boards = receiving_objects(cfg)
    if not boards:
        typer.echo("no flow reads or writes an object that receives webhooks: nothing to do")
        return
    base = url or default_base_url(cfg)
    attempt = uuid.uuid4().hex  # this run's requests are new ones, never a replay of a failed run
    table = Table("connection", "board", "event", "webhook", "status")
    store = _open_store(cfg)
    try:
        for name, names in boards.items():
            connector, source = _connector(cfg, name, store)
            try:
                protection = source.protection()
                for warning in protection.warnings:
                    typer.secho(f"{name}: {warning}", fg=typer.colors.YELLOW, err=True)
                secret = (
                    receivers.receiver(store, name).url_secret if protection.kind == "secret_url" else None
                )
                target = source.receiver_url(base, secret)
                receivers.set_callback_url(store, name, target)
                for named in names:
                    result = source.ensure_subscriptions(named, target, attempt=attempt)
                    for sub in result.created:
                        table.add_row(name, sub.object_id, sub.event, sub.id, "created")
                    for sub in result.existing:
                        table.add_row(name, sub.object_id, sub.event, sub.id, "present")
            except CrmsyncError as exc:
                vendor = cfg.connections[name].type
                if isinstance(exc, CallbackUnreachable) or UNREACHABLE.lower() in str(exc).lower():
                    raise _unreachable(exc, vendor, base, url is not None) from exc
                raise _fail(exc, vendor) from exc
            finally:
                connector.close()
            typer.echo(f"{name}: {protection.description}")
    finally:
        store.dispose()
    Console().print(table)


@webhooks_app.command("list")
def list_(config: Path = CONFIG_OPTION) -> None:
    """List the webhooks of every object the flows use that receives webhooks."""
    cfg = load_or_exit(config)
    table = Table("connection", "board", "event", "webhook", "config")
    for name, names in receiving_objects(cfg).items():
        connector, source = _connector(cfg, name)
        try:
            for named in names:
                for sub in source.list_subscriptions(named):
                    table.add_row(name, sub.object_id, sub.event, sub.id, str(sub.config or ""))
        except CrmsyncError as exc:
            raise _fail(exc, cfg.connections[name].type) from exc
        finally:
            connector.close()
    Console().print(table)
