"""The settings of one SQL reporting connection (``type: sql`` in ``crmsync.yaml``).

The database is the user's own reporting database (MySQL/MariaDB, PostgreSQL or SQLite), which
BI tools read; it is never crmsync's store. Its URL usually carries a password: it is kept as a
:class:`DatabaseUrl`, which prints with the password hidden (:func:`crmsync.redact.redact_url`).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from crmsync.connectors.settings import Model
from crmsync.redact import redact_url

#: the column types a reporting column can have (see :mod:`.tables`)
ColumnType = Literal["text", "number", "integer", "boolean", "date", "datetime", "json"]
COLUMN_TYPES: tuple[ColumnType, ...] = ("text", "number", "integer", "boolean", "date", "datetime", "json")

Backend = Literal["sqlite", "postgresql", "mysql"]
_BACKENDS: dict[str, Backend] = {
    "sqlite": "sqlite",
    "postgresql": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
}
#: lower-case SQL names: table prefixes, schemas, object and column names
NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
#: the longest table or column name crmsync makes (PostgreSQL cuts names at 63 bytes)
MAX_NAME_LENGTH = 63


class DatabaseUrl(SecretStr):
    """A SQLAlchemy database URL whose printouts hide the password (and secret query values)."""

    def _display(self) -> str:
        return redact_url(self.get_secret_value(), database=True)


class SqlConnection(Model):
    """A reporting database crmsync writes current-state, event-history and snapshot tables into."""

    # inputs stay out of error messages: a refused URL carries its password
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, hide_input_in_errors=True)

    type: Literal["sql"] = Field(
        description="Connection type: a SQL reporting database (MySQL/MariaDB, PostgreSQL, SQLite)."
    )
    url: DatabaseUrl = Field(
        description=(
            "SQLAlchemy URL of the reporting database, e.g. postgresql+psycopg://bi:PASSWORD@db/reports, "
            "mysql+pymysql://…, sqlite:///reports.db (printed with the password hidden)."
        )
    )
    table_prefix: str = Field(
        "crm_",
        max_length=20,
        description="Prefix of every table crmsync creates (lower case letters, digits and _).",
    )
    db_schema: str | None = Field(
        None,
        alias="schema",
        description=(
            "PostgreSQL schema (created if missing) or MySQL database of the tables; unset: the default."
        ),
    )
    column_types: dict[str, dict[str, ColumnType]] = Field(
        default_factory=dict,
        description=(
            "Column types per object and column, overriding what the source's describe says "
            "(text, number, integer, boolean, date, datetime, json)."
        ),
    )
    pool_size: int = Field(5, ge=1, description="Connections kept open to the database.")
    max_overflow: int = Field(5, ge=0, description="Extra connections opened at busy times, closed after.")
    pool_timeout_seconds: float = Field(30.0, gt=0, description="Longest wait for a free connection.")
    pool_recycle_seconds: float = Field(
        3600.0, gt=0, description="Connections older than this are replaced (servers close idle ones)."
    )
    connect_timeout_seconds: int = Field(10, ge=1, description="Timeout of opening one connection.")

    @field_validator("url")
    @classmethod
    def _known_database(cls, value: DatabaseUrl) -> DatabaseUrl:
        backend_of(value.get_secret_value())
        return value

    @field_validator("table_prefix", "db_schema")
    @classmethod
    def _sql_name(cls, value: str | None) -> str | None:
        if value and not NAME.match(value):
            raise ValueError(
                f"{value!r} must be lower case letters, digits and _ (not starting with a digit)"
            )
        return value

    @field_validator("column_types")
    @classmethod
    def _column_names(cls, value: dict[str, dict[str, ColumnType]]) -> dict[str, dict[str, ColumnType]]:
        for object_name, columns in value.items():
            for name in (object_name, *columns):
                if not NAME.match(name):
                    raise ValueError(f"{name!r} must be lower case letters, digits and _")
        return value

    @model_validator(mode="after")
    def _schema_needs_a_server(self) -> SqlConnection:
        if self.db_schema and self.backend == "sqlite":
            raise ValueError("schema cannot be used with SQLite (one file is one database)")
        return self

    @property
    def backend(self) -> Backend:
        return backend_of(self.url.get_secret_value())

    @property
    def shown_url(self) -> str:
        """The URL fit to print: its password hidden."""
        return redact_url(self.url.get_secret_value(), database=True)

    def sqlalchemy_url(self) -> URL:
        return make_url(self.url.get_secret_value())


def backend_of(url: str) -> Backend:
    """``sqlite``, ``postgresql`` or ``mysql`` (MariaDB too) for a SQLAlchemy URL; ValueError else."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError(
            f"{redact_url(url, database=True)} is not a database URL "
            "(e.g. postgresql+psycopg://user:password@host/db, mysql+pymysql://…, sqlite:///file.db)"
        ) from None
    name = parsed.get_backend_name()
    if name not in _BACKENDS:
        raise ValueError(f"unsupported database {name!r}: use postgresql, mysql/mariadb or sqlite")
    return _BACKENDS[name]
