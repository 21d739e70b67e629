"""Fixtures of the SQL reporting connector: each test runs on SQLite, PostgreSQL and MariaDB.

One database per server and session (made and dropped by the parent conftest's
``server_database``); each test gets its own table prefix there, so tests never see each other's
tables. SQLite gets a new file per test.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from crmsync.connectors.sql import SqlConnection, SqlConnector

from ...conftest import KINDS, server_database

#: runs a test on PostgreSQL and MariaDB only: what SQLite has no counterpart of (a login, a server)
SERVERS_ONLY = pytest.mark.parametrize("sql_url", ["postgresql", "mysql"], indirect=True)
T0 = dt.datetime(2025, 3, 3, 9, 0, tzinfo=dt.UTC)  # a Monday


class _Databases(dict[str, str]):
    def __init__(self, stack: ExitStack) -> None:
        super().__init__()
        self._stack = stack

    def __missing__(self, kind: str) -> str:
        url = self._stack.enter_context(server_database(kind))
        self[kind] = url
        return url


@pytest.fixture(scope="session")
def _sql_databases() -> Iterator[dict[str, str]]:
    with ExitStack() as stack:
        yield _Databases(stack)


@pytest.fixture(params=KINDS)
def sql_url(request: pytest.FixtureRequest, tmp_path: Path, _sql_databases: dict[str, str]) -> str:
    """A reporting database of each kind (SQLite: a new file)."""
    kind: str = request.param  # a test marked with SERVERS_ONLY runs on the servers alone
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'reports.db'}"
    return _sql_databases[kind]


class Clock:
    """A clock the test moves: each reading is one second after the last."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        self.now += dt.timedelta(seconds=1)
        return self.now


@pytest.fixture
def make_connector(sql_url: str) -> Iterator[Callable[..., SqlConnector]]:
    """Builds connectors on ``sql_url`` that share one table prefix of their own (closed at the end)."""
    prefix = f"t{secrets.token_hex(3)}_"
    made: list[SqlConnector] = []

    def make(objects: Any = (), clock: Any = None, **settings: Any) -> SqlConnector:
        values = {"type": "sql", "url": sql_url, "table_prefix": prefix, **settings}
        connector = SqlConnector(
            "reports", settings=SqlConnection.model_validate(values), objects=objects, clock=clock or Clock()
        )
        made.append(connector)
        return connector

    yield make
    for connector in made:
        connector.close()
