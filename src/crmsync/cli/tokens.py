"""``crmsync token create | list | revoke``: API tokens for applications."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from crmsync.cli.config import CONFIG_OPTION, load_or_exit
from crmsync.cli.store_errors import reports_store_errors
from crmsync.cli.text import printable
from crmsync.store import tokens as token_store
from crmsync.store.db import Store

tokens_app = typer.Typer(
    help="API tokens that applications use to call the ingest and view API.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(tokens_app, name="token")


def _store(config: Path) -> Store:
    store = Store(load_or_exit(config).store.url)
    if store.dialect == "sqlite":
        store.upgrade()
    return store


@tokens_app.command("create")
@reports_store_errors
def create(
    name: str = typer.Argument(..., help="A name for the token, e.g. the application's."),
    config: Path = CONFIG_OPTION,
) -> None:
    """Create a token and print it once: only its hash is stored."""
    store = _store(config)
    try:
        token = token_store.create_token(store, name)
    except ValueError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc
    finally:
        store.dispose()
    typer.echo(token)
    typer.echo(
        f"token {name!r} created; it is shown only now — keep it in your application's secrets", err=True
    )


@tokens_app.command("list")
@reports_store_errors
def list_(config: Path = CONFIG_OPTION) -> None:
    """List tokens (names, prefixes and dates; never the tokens)."""
    store = _store(config)
    try:
        rows = token_store.list_tokens(store)
    finally:
        store.dispose()
    table = Table("name", "prefix", "created", "last used", "revoked")
    for row in rows:
        table.add_row(
            printable(row.name),
            row.prefix,
            str(row.created_at),
            str(row.last_used_at or "-"),
            str(row.revoked_at or "-"),
        )
    Console().print(table)


@tokens_app.command("revoke")
@reports_store_errors
def revoke(name: str = typer.Argument(..., help="The token's name."), config: Path = CONFIG_OPTION) -> None:
    """Revoke a token: requests with it are refused from now on."""
    store = _store(config)
    try:
        found = token_store.revoke_token(store, name)
    finally:
        store.dispose()
    if not found:
        typer.secho(f"no active token named {name!r}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    typer.echo(f"token {name!r} revoked")
