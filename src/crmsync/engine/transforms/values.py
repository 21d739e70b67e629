"""Bounds every transform keeps, and the small readers the built-in transforms share.

The limits (:data:`MAX_TEXT`, :data:`MAX_DIGITS`, :data:`MAX_NUMBER_TEXT`, :data:`MAX_EMAIL`,
:data:`MAX_URL`) are checked before any costly work, so a hostile value costs microseconds.
:func:`shown` quotes a value in a refusal without ever quoting megabytes back. The underscored
helpers (reading text, blanks, Monday's JSON column values) are shared by the modules of this
package and are not part of its interface.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

from crmsync.errors import FixTheData

#: the longest text any transform reads or writes (Salesforce's long text area holds 131,072)
MAX_TEXT = 131_072
#: the most digits a number may have before its decimal point (SQL's widest DECIMAL holds 38)
MAX_DIGITS = 38
#: the longest text read as a number, a date, a phone number
MAX_NUMBER_TEXT = 100
#: the longest e-mail address (RFC 5321) and URL read
MAX_EMAIL = 254
MAX_URL = 2048


def _bad(message: str) -> FixTheData:
    return FixTheData(message)


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: a refusal never quotes megabytes back."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"a number of about {int(value.bit_length() * 0.30103) + 1} digits"
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit]) + f"… ({len(value):,} characters)"
    text = repr(value) if not isinstance(value, (list, dict)) else _short_json(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _short_json(value: Any) -> str:
    try:
        return json.dumps(value, default=str)[:200]
    except (ValueError, RecursionError):
        return f"a {type(value).__name__}"


def bounded_text(value: str, limit: int = MAX_TEXT, what: str = "text") -> str:
    """``value`` when at most ``limit`` characters long; :class:`FixTheData` otherwise."""
    if len(value) > limit:
        raise _bad(f"{what} is {len(value):,} characters long; at most {limit:,} allowed")
    return value


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _monday(value: Any) -> Any:
    """A Monday column value: a JSON string holding an object or list is decoded."""
    if isinstance(value, str) and len(value) <= MAX_TEXT and value.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):  # not JSON, or nested past any real column value
            return value
    return value


def _as_text(value: Any) -> str:
    """``value`` as text of at most :data:`MAX_TEXT` characters (:class:`FixTheData` otherwise)."""
    if isinstance(value, str):
        return bounded_text(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if value.bit_length() > 4 * MAX_DIGITS:
            raise _bad(f"{shown(value)} is too large a number")
        return str(value)
    if isinstance(value, float | Decimal):
        if isinstance(value, Decimal) and value.is_finite() and value.adjusted() > MAX_DIGITS:
            raise _bad(f"{shown(value)} is too large a number")
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    try:
        text = json.dumps(value, sort_keys=True, default=str)
    except (ValueError, TypeError, RecursionError) as exc:
        raise _bad(f"{shown(value)} cannot be written as text: {exc}") from None
    return bounded_text(text)
