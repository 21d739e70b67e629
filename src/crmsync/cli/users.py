"""``crmsync users add | list | remove``: who may log in to the dashboard, and with which role.

Passwords are hashed with argon2 (:mod:`crmsync.store.users`); adding an existing user sets a new
password and role and ends that user's sessions.
"""

from __future__ import annotations

from pathlib import Path

import typer

from crmsync.cli.config import CONFIG_OPTION, load_or_exit
from crmsync.cli.store_errors import reports_store_errors
from crmsync.store import users
from crmsync.store.db import Store

users_app = typer.Typer(help="The dashboard's users: add one (or set a password), list, remove.")

#: the shortest password accepted
MIN_PASSWORD = 10


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users", no_args_is_help=True)


def _store(config: Path) -> Store:
    store = Store(load_or_exit(config).store.url)
    if store.dialect == "sqlite":
        store.upgrade()
    return store


@users_app.command("add")
@reports_store_errors
def add(
    name: str = typer.Argument(..., help="The user's login name."),
    role: str = typer.Option("viewer", "--role", help="viewer (sees everything) or admin (also acts)."),
    password: str = typer.Option(
        ...,
        prompt=True,
        hide_input=True,
        confirmation_prompt=True,
        envvar="CRMSYNC_USER_PASSWORD",
        help="Asked for when not given (or set CRMSYNC_USER_PASSWORD).",
    ),
    config: Path = CONFIG_OPTION,
) -> None:
    """Add a dashboard user, or set an existing one's password and role."""
    if role not in users.ROLES:
        typer.secho(f"unknown role {role!r}; valid: {', '.join(users.ROLES)}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    if len(password) < MIN_PASSWORD:
        typer.secho(f"the password needs at least {MIN_PASSWORD} characters", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    store = _store(config)
    try:
        new = users.add_user(store, name, password, role)
    finally:
        store.dispose()
    typer.echo(f"{'added' if new else 'updated'} {name} ({role})")


@users_app.command("list")
@reports_store_errors
def list_(config: Path = CONFIG_OPTION) -> None:
    """List the dashboard's users and their roles."""
    store = _store(config)
    try:
        found = users.list_users(store)
    finally:
        store.dispose()
    if not found:
        typer.echo("no users: add one with `crmsync users add NAME --role admin`")
    for user in found:
        typer.echo(f"{user.name}  {user.role}")


@users_app.command("remove")
@reports_store_errors
def remove(name: str = typer.Argument(..., help="The user to remove."), config: Path = CONFIG_OPTION) -> None:
    """Remove a dashboard user (their sessions end at once)."""
    store = _store(config)
    try:
        gone = users.remove_user(store, name)
    finally:
        store.dispose()
    if not gone:
        typer.secho(f"no user {name}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    typer.echo(f"removed {name}")
