"""``crmsync sandbox``: run local Salesforce, Trello and Monday.com emulators."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer

from crmsync.sandbox.defaults import DEFAULT_DIRECTORY, DEFAULT_PORTS, DEFAULT_SAVE_SECONDS, EXTRA_HINT

if TYPE_CHECKING:
    from crmsync.sandbox.runner import Sandbox


def register(app: typer.Typer) -> None:
    app.command("sandbox")(sandbox)


def sandbox(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    salesforce_port: int = typer.Option(DEFAULT_PORTS["salesforce"], help="0 picks a free port."),
    trello_port: int = typer.Option(DEFAULT_PORTS["trello"], help="0 picks a free port."),
    monday_port: int = typer.Option(DEFAULT_PORTS["monday"], help="0 picks a free port."),
    seed: str | None = typer.Option(
        None,
        help=(
            "Seed data set to load: 'demo' (all three emulators: the W1 and W2 recipes), "
            "'billing' (Salesforce only: the usage-billing recipe and `crmsync init`), 'empty'."
        ),
    ),
    state: Path | None = typer.Option(
        None,
        help="Keep the emulators' state in this file: loaded at start, saved while it runs and at exit.",
    ),
    save_every: float = typer.Option(
        DEFAULT_SAVE_SECONDS, min=0.1, help="Seconds between two saves of --state while the state changes."
    ),
    env_file: Path | None = typer.Option(
        None, help="Also write the credentials as KEY=value lines to this file."
    ),
    directory: Path = typer.Option(
        DEFAULT_DIRECTORY, "--dir", help="Where the generated certificate and keys are kept."
    ),
    tls: bool = typer.Option(True, help="Serve Salesforce over HTTPS (--no-tls: plain HTTP)."),
) -> None:
    """Start local emulators of Salesforce, Trello and Monday.com and print their credentials.

    Runs until interrupted (Ctrl-C or SIGTERM). Fault rules, seeding and call counts are
    available on each emulator under /_sandbox/ (see docs/sandbox.md).
    """
    Sandbox = load_sandbox()
    box = Sandbox(
        host=host,
        ports={"salesforce": salesforce_port, "trello": trello_port, "monday": monday_port},
        seed=seed,
        state_file=state,
        directory=directory,
        tls=tls,
        save_seconds=save_every,
    )
    try:
        box.start()
    except (OSError, ValueError) as exc:
        typer.secho(f"cannot start the sandbox: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        for name, server in box.servers.items():
            typer.echo(f"{name:<11} {server.url}")
        if seed is not None and box.seeded:
            typer.echo(_seed_note(seed, box.seeded, list(box.emulators)))
        typer.echo("")
        for key, value in box.env().items():
            typer.echo(f"{key}={value}")
        if env_file is not None:
            box.write_env(env_file)
            typer.echo(f"\ncredentials written to {env_file}")
        typer.echo("\nsandbox running; Ctrl-C to stop", err=True)
        stop.wait()
    finally:
        box.stop()
        typer.echo("sandbox stopped", err=True)


def load_sandbox() -> type[Sandbox]:
    """The emulators, imported when asked for: a plain ``pip install crmsync`` has none."""
    try:
        import crmsync.sandbox.monday
        import crmsync.sandbox.salesforce
        import crmsync.sandbox.trello  # noqa: F401  (the emulators load their dependencies here)
        from crmsync.sandbox.runner import Sandbox
    except ImportError as exc:
        typer.secho(f"{EXTRA_HINT} ({exc})", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    return Sandbox


def _seed_note(seed: str, seeded: list[str], emulators: list[str]) -> str:
    """Which emulators hold the seed, and which start empty because they have no such seed."""
    note = f"\nseed {seed!r} loaded into {', '.join(seeded)}"
    others = [name for name in emulators if name not in seeded]
    if others:
        note += f"; {' and '.join(others)} {'has' if len(others) == 1 else 'have'} no {seed!r} seed (empty)"
    return note
