"""Values on their way into a reporting column: converted to the column's type, or refused."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from crmsync.connectors.sql.settings import ColumnType
from crmsync.connectors.sql.tables import ColumnSpec
from crmsync.connectors.sql.values import coerce, jsonable


@pytest.mark.parametrize(
    ("kind", "value", "stored"),
    [
        ("text", "Quote", "Quote"),
        ("text", 12, "12"),
        ("text", True, "true"),
        ("text", {"b": 1, "a": 2}, '{"a": 2, "b": 1}'),
        ("number", "1500.50", 1500.5),
        ("number", Decimal("2.25"), 2.25),
        ("number", 3, 3.0),
        ("number", "", None),
        ("integer", "42", 42),
        ("integer", 7.0, 7),
        ("integer", "1e3", 1000),
        ("boolean", "yes", True),
        ("boolean", "FALSE", False),
        ("boolean", 1, True),
        ("date", "2025-03-10", dt.date(2025, 3, 10)),
        ("date", "2025-03-10T17:00:00Z", dt.date(2025, 3, 10)),
        ("datetime", "2025-03-10T17:00:00+02:00", dt.datetime(2025, 3, 10, 15, 0)),
        ("datetime", "2025-03-10T17:00:00Z", dt.datetime(2025, 3, 10, 17, 0)),
        ("datetime", dt.datetime(2025, 3, 10, 17, 0), dt.datetime(2025, 3, 10, 17, 0)),
        ("datetime", dt.date(2025, 3, 10), dt.datetime(2025, 3, 10, 0, 0)),
        ("json", ["ann", "bob"], ["ann", "bob"]),
        ("json", "", ""),
        ("text", None, None),
    ],
)
def test_values_are_converted(kind: ColumnType, value: Any, stored: Any) -> None:
    result = coerce(ColumnSpec("c", kind), value, check_length=True)
    assert result == stored and type(result) is type(stored)


@pytest.mark.parametrize(
    ("column", "value", "said"),
    [
        (ColumnSpec("c", "text", 3), "four", "value too long: 4 characters, the column holds 3"),
        (ColumnSpec("c", "number"), "twelve", "'twelve' is not a number"),
        (ColumnSpec("c", "number"), float("nan"), "is not a finite number"),
        (ColumnSpec("c", "number"), True, "True is not a number"),
        (ColumnSpec("c", "integer"), "4.5", "'4.5' is not a whole number"),
        (ColumnSpec("c", "integer"), 2**63, "out of range for a 64-bit integer"),
        (ColumnSpec("c", "boolean"), "maybe", "'maybe' is not true or false"),
        (ColumnSpec("c", "date"), "10/03/2025", "is not a date"),
        (ColumnSpec("c", "datetime"), "yesterday", "is not an ISO 8601 date and time"),
        (ColumnSpec("c", "json"), {"a": object()}, "cannot be stored as JSON"),
    ],
)
def test_values_that_do_not_fit_are_refused(column: ColumnSpec, value: Any, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        coerce(column, value, check_length=True)


def test_lengths_are_left_to_a_database_that_enforces_them() -> None:
    assert coerce(ColumnSpec("c", "text", 3), "four", check_length=False) == "four"


def test_history_values_are_json() -> None:
    assert jsonable(dt.datetime(2025, 3, 10, 17, 0)) == "2025-03-10T17:00:00+00:00"
    assert jsonable(dt.date(2025, 3, 10)) == "2025-03-10"
    assert jsonable(Decimal("1.5")) == 1.5


@pytest.mark.parametrize(("kind", "value"), [("text", "a\x00b"), ("json", ["ann", "b\x00b"])])
def test_a_nul_character_is_refused_for_postgresql_and_kept_elsewhere(kind: ColumnType, value: Any) -> None:
    column = ColumnSpec("members", kind)
    with pytest.raises(ValueError, match="NUL character"):
        coerce(column, value, check_length=False, refuse_nul=True)
    assert coerce(column, value, check_length=False) == value
