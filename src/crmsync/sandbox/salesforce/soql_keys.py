"""How SOQL compares values: a comparable key per field type, and the days of relative dates.

A stored value and a literal are compared through the same key function for the field's describe
type (:func:`row_key`), which carries Salesforce's rules: text and ids compare case-insensitively
(a 15-character id as its 18-character form) and an empty string is null; numbers as numbers;
dates as ISO days; datetimes as aware instants; a multi-select picklist as a set of its values.
``None`` stands for null. :func:`relative_range` gives the days ``[start, end)`` of ``TODAY``,
``LAST_N_DAYS:n`` and the like, counted from a given day (weeks start on Sunday).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from crmsync.sandbox.salesforce.ids import normalize as normalize_id
from crmsync.sandbox.salesforce.soql_tree import RelativeDate

TEXT_TYPES = frozenset(
    {"string", "textarea", "email", "phone", "url", "picklist", "combobox", "encryptedstring", "time"}
)
ID_TYPES = frozenset({"id", "reference"})
NUMBER_TYPES = frozenset({"int", "long", "double", "currency", "percent"})


# -- keys: how each kind of field compares ---------------------------------------------------------


def text_key(v: Any) -> Any:
    if v is None or v == "":
        return None
    return v.lower() if isinstance(v, str) else str(v).lower()


def id_key(v: Any) -> Any:
    if not v:
        return None
    if isinstance(v, str) and len(v) == 15:
        v = normalize_id(v) or v
    return str(v).lower()


def _number_key(v: Any) -> Any:
    if v is None or isinstance(v, int | float):
        return v
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _bool_key(v: Any) -> Any:
    return bool(v) if not isinstance(v, str) else v.lower() == "true"


def _date_key(v: Any) -> Any:
    if v is None or v == "":
        return None
    if isinstance(v, datetime):
        return v.date().isoformat()
    if isinstance(v, date):
        return v.isoformat()
    return str(v)[:10]


def _datetime_key(v: Any) -> Any:
    if v is None or v == "":
        return None
    if isinstance(v, datetime):
        return v if v.tzinfo is not None else v.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(v))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _multi_key(v: Any) -> Any:
    if v is None or v == "":
        return None
    return frozenset(part.strip().lower() for part in str(v).split(";") if part.strip())


def row_key(field_type: str) -> Callable[[Any], Any]:
    """How a stored value of ``field_type`` compares and sorts (None stands for null)."""
    if field_type in ID_TYPES:
        return id_key
    if field_type in NUMBER_TYPES:
        return _number_key
    if field_type == "boolean":
        return _bool_key
    if field_type == "date":
        return _date_key
    if field_type == "datetime":
        return _datetime_key
    if field_type == "multipicklist":
        return _multi_key
    return text_key


# -- relative dates ----------------------------------------------------------------------------


def _add_months(day: date, months: int) -> date:
    """The first of the month ``months`` after the month of ``day``."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def relative_range(rel: RelativeDate, today: date) -> tuple[date, date]:
    """The days ``[start, end)`` a relative date literal stands for (weeks start on Sunday)."""
    day = timedelta(days=1)
    week = today - timedelta(days=(today.weekday() + 1) % 7)
    month = today.replace(day=1)
    quarter = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    year = date(today.year, 1, 1)
    n = rel.n or 0
    ranges: dict[str, tuple[date, date]] = {
        "YESTERDAY": (today - day, today),
        "TODAY": (today, today + day),
        "TOMORROW": (today + day, today + 2 * day),
        "LAST_WEEK": (week - 7 * day, week),
        "THIS_WEEK": (week, week + 7 * day),
        "NEXT_WEEK": (week + 7 * day, week + 14 * day),
        "LAST_MONTH": (_add_months(month, -1), month),
        "THIS_MONTH": (month, _add_months(month, 1)),
        "NEXT_MONTH": (_add_months(month, 1), _add_months(month, 2)),
        "LAST_90_DAYS": (today - 90 * day, today + day),
        "NEXT_90_DAYS": (today + day, today + 91 * day),
        "LAST_QUARTER": (_add_months(quarter, -3), quarter),
        "THIS_QUARTER": (quarter, _add_months(quarter, 3)),
        "NEXT_QUARTER": (_add_months(quarter, 3), _add_months(quarter, 6)),
        "LAST_YEAR": (date(today.year - 1, 1, 1), year),
        "THIS_YEAR": (year, date(today.year + 1, 1, 1)),
        "NEXT_YEAR": (date(today.year + 1, 1, 1), date(today.year + 2, 1, 1)),
        "LAST_N_DAYS": (today - n * day, today + day),
        "NEXT_N_DAYS": (today + day, today + (n + 1) * day),
        "N_DAYS_AGO": (today - n * day, today - (n - 1) * day),
        "LAST_N_WEEKS": (week - 7 * n * day, week),
        "NEXT_N_WEEKS": (week + 7 * day, week + 7 * (n + 1) * day),
        "N_WEEKS_AGO": (week - 7 * n * day, week - 7 * (n - 1) * day),
        "LAST_N_MONTHS": (_add_months(month, -n), month),
        "NEXT_N_MONTHS": (_add_months(month, 1), _add_months(month, n + 1)),
        "N_MONTHS_AGO": (_add_months(month, -n), _add_months(month, 1 - n)),
        "LAST_N_YEARS": (date(today.year - n, 1, 1), year),
        "NEXT_N_YEARS": (date(today.year + 1, 1, 1), date(today.year + n + 1, 1, 1)),
        "N_YEARS_AGO": (date(today.year - n, 1, 1), date(today.year - n + 1, 1, 1)),
    }
    return ranges[rel.name]


@dataclass(frozen=True)
class Range:
    """The days a relative date literal stands for, as comparable keys of the field's type."""

    start: Any
    end: Any  # exclusive
