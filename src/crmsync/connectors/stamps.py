"""Vendors' timestamps as aware UTC datetimes: one parser for every connector and the engine."""

from __future__ import annotations

import datetime as dt
from typing import Any


def parse_stamp(value: str) -> dt.datetime:
    """An ISO timestamp (``Z``, ``+00:00`` or Salesforce's ``+0000``; naive is UTC) as aware UTC.
    Raises ValueError for text that is not one."""
    parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def try_stamp(value: Any) -> dt.datetime | None:
    """:func:`parse_stamp` of a value that may be empty or not a timestamp (then None)."""
    if not value:
        return None
    try:
        return parse_stamp(str(value))
    except ValueError:
        return None
