"""Comparing values read from two systems, so that a job writes only what differs.

Systems spell the same value differently: Salesforce's close date ``2026-03-31`` is Trello's
``2026-03-31T00:00:00.000Z``; an amount may be ``12000``, ``12000.0`` or ``"12000"``. :func:`same`
says whether two spellings mean one value.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MIDNIGHT = re.compile(r"^(\d{4}-\d{2}-\d{2})T00:00(:00(\.0+)?)?(Z|[+-]00:?00)?$")


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _day(value: Any) -> str | None:
    if isinstance(value, dt.datetime):
        value = value.isoformat()
    elif isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        text = value.strip()
        if _DATE.match(text):
            return text
        m = _MIDNIGHT.match(text)
        if m:
            return m.group(1)
    return None


def same(a: Any, b: Any) -> bool:
    """Do ``a`` and ``b`` spell the same value (blank = blank, 12000 = "12000.0", a date = that
    date at midnight UTC)?"""
    if _blank(a) or _blank(b):
        return _blank(a) and _blank(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return str(a).lower() == str(b).lower()
    x, y = _number(a), _number(b)
    if x is not None and y is not None:
        return math.isclose(x, y, rel_tol=0, abs_tol=1e-9)
    d, e = _day(a), _day(b)
    if d is not None and e is not None:
        return d == e
    if isinstance(a, dt.datetime | dt.date) or isinstance(b, dt.datetime | dt.date):
        return str(a) == str(b)
    return str(a) == str(b)
