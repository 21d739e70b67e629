"""One clear line instead of a traceback when a command cannot use the store.

Every command that opens the store is wrapped in :func:`reports_store_errors`: a database that
is down, refuses the login, is read-only or out of disk space is reported as such, on one line
naming the store (its password hidden) and what to check, and the command exits with status 1.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from sqlalchemy.exc import SQLAlchemyError

from crmsync.store.db import store_trouble

P = ParamSpec("P")
R = TypeVar("R")

#: the exit status of a command that could not use the store
STORE_EXIT = 1


def reports_store_errors(command: Callable[P, R]) -> Callable[P, R]:
    """``command``, printing a store error as one line (see :class:`~crmsync.store.db.StoreTrouble`)."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except SQLAlchemyError as exc:
            typer.secho(f"crmsync: {store_trouble(exc)}", fg=typer.colors.RED, err=True)
            raise typer.Exit(STORE_EXIT) from None

    return wrapper
