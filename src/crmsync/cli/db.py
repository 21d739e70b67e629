"""``crmsync db`` (the store's schema) and ``crmsync dead-letters`` (inspect, replay, discard)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from crmsync.cli.store_errors import reports_store_errors
from crmsync.cli.text import printable
from crmsync.engine import operations
from crmsync.engine.operations import letter_as_dict, letter_state
from crmsync.engine.queue import ChangeQueue
from crmsync.errors import ConfigError
from crmsync.store import Store

CONFIG_HELP = "The configuration file whose store to use (default: ./crmsync.yaml)."
URL_HELP = "The store's database URL, e.g. sqlite:///crmsync.db (instead of a configuration file)."


def register(app: typer.Typer) -> None:
    db_app = typer.Typer(help="The store database.", no_args_is_help=True)
    db_app.command("upgrade")(reports_store_errors(upgrade))
    db_app.command("status")(reports_store_errors(status))
    app.add_typer(db_app, name="db")

    letters = typer.Typer(
        help="Changes that failed for good: inspect them, replay them once fixed, or discard them.",
        no_args_is_help=True,
    )
    letters.command("list")(reports_store_errors(list_letters))
    letters.command("show")(reports_store_errors(show_letter))
    letters.command("replay")(reports_store_errors(replay_letters))
    letters.command("discard")(reports_store_errors(discard_letters))
    app.add_typer(letters, name="dead-letters")


def open_store(config: Path | None, url: str | None) -> Store:
    """The store named by ``--url``, else by the configuration file."""
    if url:
        return Store(url)
    from crmsync.config import DEFAULT_PATH, load_config

    try:
        settings = load_config(config or DEFAULT_PATH)
    except ConfigError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        for problem in exc.problems:
            typer.secho(f"  - {problem}", err=True)
        raise typer.Exit(2) from exc
    return Store(settings.store.url)


def upgrade(
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    url: str | None = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """Create the store's tables, or migrate them to this version of crmsync."""
    store = open_store(config, url)
    try:
        before = store.current_revision()
        store.upgrade()
        after = store.current_revision()
    finally:
        store.dispose()
    if before == after:
        typer.echo(f"{store!r} is up to date (revision {after})")
    else:
        typer.echo(f"{store!r} upgraded from {before or 'empty'} to revision {after}")


def status(
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    url: str | None = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """Whether the store is reachable and up to date (exit status 1 if not)."""
    store = open_store(config, url)
    try:
        current = store.is_current()
        typer.echo(f"{store!r} at revision {store.current_revision() or 'none (empty)'}")
    finally:
        store.dispose()
    if not current:
        typer.secho("not up to date: run `crmsync db upgrade`", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(1)


def list_letters(
    flow: str | None = typer.Option(None, help="Only this flow."),
    search: str | None = typer.Option(None, help="Only those whose record key or error message holds this."),
    limit: int = typer.Option(100, help="At most this many, newest first."),
    all_: bool = typer.Option(False, "--all", help="Include discarded ones."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    url: str | None = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """List dead letters, newest first."""
    store = open_store(config, url)
    try:
        letters = operations.list_letters(
            ChangeQueue(store), flow=flow, search=search, limit=limit, include_discarded=all_
        )
    finally:
        store.dispose()
    if as_json:
        for letter in letters:
            typer.echo(json.dumps(letter_as_dict(letter), default=str))
        return
    if not letters:
        typer.echo("no dead letters")
        return
    for x in letters:
        error = printable(f"{x.error.get('kind', '?')}: {x.error.get('message', '')}")
        typer.echo(
            f"{x.id:>6}  {x.created_at:%Y-%m-%d %H:%M:%S}  {letter_state(x):<9}  {printable(x.flow)}  "
            f"{printable(x.record_key)}  {x.operation}  attempts={x.attempts}  {error}"
        )


def show_letter(
    id: int = typer.Argument(..., help="The dead letter's id."),
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    url: str | None = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """Show one dead letter in full: the change, its fields and the error (as JSON)."""
    store = open_store(config, url)
    try:
        letter = ChangeQueue(store).dead_letter(id)
    finally:
        store.dispose()
    if letter is None:
        typer.secho(f"no dead letter {id}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(letter_as_dict(letter), indent=2, default=str))


def replay_letters(
    ids: list[int] = typer.Argument(..., help="Dead letter ids."),
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    url: str | None = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """Queue the changes of these dead letters again (after fixing the cause)."""
    store = open_store(config, url)
    try:
        done = operations.replay_letters(ChangeQueue(store), ids)
    finally:
        store.dispose()
    typer.echo(f"replayed {done} of {len(ids)} (already replayed or discarded ones are left alone)")
    if done < len(ids):
        raise typer.Exit(1)


def discard_letters(
    ids: list[int] = typer.Argument(..., help="Dead letter ids."),
    reason: str | None = typer.Option(None, "--reason", help="Why they are discarded (kept with them)."),
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    url: str | None = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """Discard these dead letters (kept for the record; hidden from `list` unless --all)."""
    store = open_store(config, url)
    try:
        done = operations.discard_letters(ChangeQueue(store), ids, reason)
    finally:
        store.dispose()
    typer.echo(f"discarded {done} of {len(ids)}")
    if done < len(ids):
        raise typer.Exit(1)
