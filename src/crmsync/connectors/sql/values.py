"""Values on their way into a reporting column, and back out as JSON for the history table.

:func:`coerce` turns what a source sends (text from a CSV, numbers as text, ISO dates, ...) into
the column's Python type, or raises :class:`ValueError` saying why it cannot (the connector turns
that into *fix the data*). Datetimes are stored in UTC without a zone; a naive one is taken as UTC.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal
from typing import Any

from crmsync.connectors.sql.tables import ColumnSpec

MIN_INTEGER, MAX_INTEGER = -(2**63), 2**63 - 1
_TRUE = frozenset({"true", "t", "yes", "y", "1", "on"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "off"})


def coerce(column: ColumnSpec, value: Any, *, check_length: bool, refuse_nul: bool = False) -> Any:
    """``value`` as the column stores it (None stays None). ``check_length``: refuse text longer
    than the column here, for a database that would keep it (SQLite). ``refuse_nul``: refuse text
    or JSON holding a NUL character, which PostgreSQL's text and JSONB cannot store (its refusal
    would not name the column)."""
    if value is None:
        return None
    kind = column.type
    if kind == "text":
        text = _text(value)
        if check_length and column.length is not None and len(text) > column.length:
            raise ValueError(f"value too long: {len(text)} characters, the column holds {column.length}")
        if refuse_nul and "\x00" in text:
            raise ValueError("the text holds a NUL character (U+0000), which PostgreSQL cannot store")
        return text
    if isinstance(value, str) and not value.strip() and kind != "json":
        return None  # an empty cell of a CSV, an emptied field
    if kind == "number":
        return _number(value)
    if kind == "integer":
        return _integer(value)
    if kind == "boolean":
        return _boolean(value)
    if kind == "date":
        return _date(value)
    if kind == "datetime":
        return utc_naive(value)
    dumped = json.dumps(value, default=_refuse)  # json: anything JSON can hold
    if refuse_nul and "\\u0000" in dumped:
        raise ValueError("the value holds a NUL character (U+0000), which PostgreSQL cannot store")
    return value


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return number


def _integer(value: Any) -> int:
    number = _whole(value)
    if not MIN_INTEGER <= number <= MAX_INTEGER:
        raise ValueError(f"{number} is out of range for a 64-bit integer column")
    return number


def _whole(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float | Decimal) and math.isfinite(value) and value == int(value):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                number = Decimal(text)
            except ArithmeticError:
                number = Decimal("NaN")
            if number.is_finite() and number == number.to_integral_value():
                return int(number)
    raise ValueError(f"{value!r} is not a whole number")


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"{value!r} is not true or false")


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return utc_naive(value).date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return dt.date.fromisoformat(text[:10]) if len(text) >= 10 else dt.date.fromisoformat(text)
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not a date (YYYY-MM-DD)")


def utc_naive(value: Any) -> dt.datetime:
    """A datetime (or ISO text, or a date at midnight) in UTC, without its zone."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO 8601 date and time") from None
    elif isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time())
    if not isinstance(value, dt.datetime):
        raise ValueError(f"{value!r} is not a date and time")
    moment: dt.datetime = value
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment


def _refuse(value: Any) -> Any:
    raise ValueError(f"{type(value).__name__} {value!r} cannot be stored as JSON")


def jsonable(value: Any) -> Any:
    """A column value as it is written into ``old_values`` / ``new_values``."""
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC).isoformat() if value.tzinfo is None else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value
