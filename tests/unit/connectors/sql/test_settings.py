"""The settings of a SQL reporting connection: validated, and printed with the password hidden."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from crmsync.connectors.sql import ObjectSpec, SqlConnection, spec_from_describe
from crmsync.connectors.sql.tables import ColumnSpec
from crmsync.errors import ConfigError


def settings(**values: Any) -> SqlConnection:
    return SqlConnection.model_validate({"type": "sql", "url": "sqlite:///reports.db", **values})


def test_the_password_is_hidden_in_every_printout() -> None:
    s = settings(url="postgresql+psycopg://bi:s3cr3t-pw@db.example/reports?sslpassword=k3y-k3y")
    for shown in (str(s), repr(s), s.shown_url, s.model_dump_json(), str(s.model_dump())):
        assert "s3cr3t-pw" not in shown and "k3y-k3y" not in shown
    assert s.shown_url == "postgresql+psycopg://bi:********@db.example/reports?sslpassword=********"
    assert s.url.get_secret_value().startswith("postgresql+psycopg://bi:s3cr3t-pw@")
    assert s.backend == "postgresql" and settings(url="mariadb+pymysql://u@h/db").backend == "mysql"


@pytest.mark.parametrize(
    ("values", "said"),
    [
        ({"url": "oracle://u:pw@h/db"}, "unsupported database 'oracle'"),
        ({"url": "not a url"}, "is not a database URL"),
        ({"table_prefix": "CRM-"}, "must be lower case letters"),
        ({"schema": "reports"}, "schema cannot be used with SQLite"),
        ({"column_types": {"card": {"due": "timestamp"}}}, "'text', 'number', 'integer'"),
        ({"pool_size": 0}, "greater than or equal to 1"),
        ({"colour": "blue"}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_settings_are_refused(values: dict[str, Any], said: str) -> None:
    with pytest.raises(ValidationError, match=said) as refused:
        settings(**values)
    assert "pw" not in str(refused.value)


def test_the_schema_key_is_read() -> None:
    assert settings(url="postgresql+psycopg://u@h/db", schema="reports").db_schema == "reports"


def test_columns_are_typed_from_the_describe() -> None:
    describe = {
        "fields": [
            {"name": "Name", "type": "string", "length": 120},
            {"name": "Amount", "type": "currency", "length": 0},
            {"name": "CloseDate", "type": "date"},
            {"name": "IsWon", "type": "boolean"},
            {"name": "Description", "type": "textarea", "length": 32000},
            {"name": "NumberOfEmployees", "type": "int"},
            {"name": "LastModifiedDate", "type": "datetime"},
            {"name": "BillingAddress", "type": "address"},
        ]
    }
    field_map = {
        "name": "Name", "amount": "Amount", "close_date": "CloseDate", "won": "IsWon",
        "description": "Description", "employees": "NumberOfEmployees", "modified": "LastModifiedDate",
        "address": "BillingAddress", "stage": "StageName",
    }  # fmt: skip
    spec = spec_from_describe(
        "opportunity", field_map, describe, overrides={"won": "text"}, source_system="sf"
    )
    assert spec.columns == (
        ColumnSpec("name", "text", 120),
        ColumnSpec("amount", "number"),
        ColumnSpec("close_date", "date"),
        ColumnSpec("won", "text"),
        ColumnSpec("description", "text"),  # too long for VARCHAR: unbounded
        ColumnSpec("employees", "integer"),
        ColumnSpec("modified", "datetime"),
        ColumnSpec("address", "json"),
        ColumnSpec("stage", "text"),  # not in the describe
    )


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        (lambda: ObjectSpec("Card", ()), "'Card' is not a lower-case SQL name"),
        (lambda: ObjectSpec("events", ()), "taken by crmsync's own events table"),
        (lambda: ObjectSpec("card", (ColumnSpec("updated_at", "datetime"),)), "one of crmsync's own columns"),
        (lambda: ObjectSpec("card", (ColumnSpec("a", "text"), ColumnSpec("a", "text"))), "mapped twice"),
        (lambda: ObjectSpec("card", (ColumnSpec("Due Date", "date"),)), "use lower case letters"),
    ],
)
def test_invalid_table_specs_are_refused(spec: Any, said: str) -> None:
    with pytest.raises(ConfigError, match=said):
        spec()
