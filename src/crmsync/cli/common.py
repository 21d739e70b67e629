"""What the commands share: the -c option, loading the configuration, printing errors."""

from __future__ import annotations

from pathlib import Path

import typer

from crmsync.config import load_config
from crmsync.config.models import Config
from crmsync.errors import ConfigError

CONFIG_OPTION = typer.Option(Path("crmsync.yaml"), "--config", "-c", help="The configuration file.")


def load_or_exit(path: Path) -> Config:
    """The configuration, or every problem printed and exit status 2."""
    try:
        return load_config(path)
    except ConfigError as exc:
        typer.secho(str(exc.message), fg=typer.colors.RED, err=True)
        for problem in exc.problems:
            typer.echo(f"  {problem}", err=True)
        raise typer.Exit(2) from exc
