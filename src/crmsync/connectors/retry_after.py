"""The ``Retry-After`` header (RFC 9110 §10.2.3): delta-seconds or an HTTP date, as seconds to wait.

Every connector reads it the same way: a vendor that says how long to wait is believed, within
:data:`MAX_RETRY_AFTER`; a value that is neither form (or not finite) is ignored, as if absent.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

#: the longest wait taken from a vendor's hint (a day): a larger one is clipped to it
MAX_RETRY_AFTER = 86_400.0


def bounded_wait(value: float | None) -> float | None:
    """``value`` clipped to ``0..MAX_RETRY_AFTER``; ``None`` for ``None``, NaN or infinities."""
    if value is None or not math.isfinite(value):
        return None
    return min(max(value, 0.0), MAX_RETRY_AFTER)


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait for a ``Retry-After`` value (``"120"`` or ``"Fri, 31 Dec 1999 23:59:59 GMT"``).

    A date in the past means "now" (0 s); ``None`` when the value is missing or unreadable.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if len(text) <= 32 and text.replace(".", "", 1).isdigit():
        return bounded_wait(float(text))  # delta-seconds (a fraction is tolerated)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": the date is in UTC
        when = when.replace(tzinfo=dt.UTC)
    current = now if now is not None else dt.datetime.now(dt.UTC)
    return bounded_wait((when - current).total_seconds())


def retry_after_header(headers: Mapping[str, str] | None, *, now: dt.datetime | None = None) -> float | None:
    """:func:`parse_retry_after` of a reply's headers (any capitalisation of the name)."""
    if not headers:
        return None
    value = headers.get("retry-after") or headers.get("Retry-After")
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    return parse_retry_after(value, now=now)
