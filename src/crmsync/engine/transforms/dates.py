"""Date transforms: ``date`` (an ISO day) and ``datetime`` (a moment in UTC, ISO or Salesforce's form).

Both read ISO text, Python dates and Monday's date column value; ``date`` also reads text in a
given format and ``datetime`` seconds since 1970.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from crmsync.engine.transforms.registry import transform
from crmsync.engine.transforms.values import MAX_NUMBER_TEXT, _bad, _blank, _monday, shown


def _parse_datetime(value: str) -> dt.datetime:
    if len(value) > MAX_NUMBER_TEXT:
        raise _bad(f"{shown(value)} is not an ISO date and time (longer than {MAX_NUMBER_TEXT} characters)")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Salesforce writes "+0000"; Python before 3.11 could not read it, normalise anyway
    text = re.sub(r"([+-]\d\d)(\d\d)$", r"\1:\2", text)
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise _bad(f"{shown(value)} is not an ISO date and time (e.g. 2024-05-01T10:30:00Z)") from None


def _date_input(value: Any) -> Any:
    value = _monday(value)
    if isinstance(value, Mapping):  # Monday date column {"date": "2024-05-01", "time": "10:30:00"}
        day, time = value.get("date"), value.get("time")
        if _blank(day):
            return None
        return f"{day}T{time}+00:00" if time else str(day)
    return value


@transform("date", optional=("format", "default_days"))
def date(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """An ISO date ``YYYY-MM-DD`` from an ISO date/date-time, a Monday date, or text in `args.format`.

    Example: ``"2024-05-01T10:30:00Z"`` → ``"2024-05-01"``; ``args: {format: "%d/%m/%Y"}``, ``"01/05/2024"``
    → ``"2024-05-01"``. With ``args.default_days`` an empty value becomes today plus that many days
    (e.g. a required close date).
    """
    value = _date_input(value)
    if _blank(value):
        if args.get("default_days") is not None:
            return (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=int(args["default_days"]))).isoformat()
        return None
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if not isinstance(value, str):
        raise _bad(f"{shown(value)} is not a date")
    if len(value) > MAX_NUMBER_TEXT:
        raise _bad(f"{shown(value)} is not a date (longer than {MAX_NUMBER_TEXT} characters)")
    fmt = args.get("format")
    if fmt:
        try:
            return dt.datetime.strptime(value.strip(), str(fmt)).date().isoformat()
        except ValueError:
            raise _bad(f"{shown(value)} does not match the date format {fmt!r}") from None
    text = value.strip()
    if len(text) == 10:
        try:
            return dt.date.fromisoformat(text).isoformat()
        except ValueError:
            raise _bad(f"{shown(value)} is not an ISO date (YYYY-MM-DD)") from None
    return _parse_datetime(text).date().isoformat()


@transform("datetime", optional=("format",))
def datetime(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """A date-time in UTC: ISO in; ISO out, or Salesforce's form with `args.format: salesforce`.

    Example: ``"2024-05-01T12:30:00+02:00"`` → ``"2024-05-01T10:30:00+00:00"``, or with
    ``format: salesforce`` → ``"2024-05-01T10:30:00.000+0000"``. Times without an offset are taken as UTC;
    a number is seconds since 1970.
    """
    style = args.get("format", "iso")
    if style not in ("iso", "salesforce"):
        raise _bad(f"datetime: args.format must be 'iso' or 'salesforce', not {style!r}")
    value = _date_input(value)
    if _blank(value):
        return None
    if isinstance(value, bool):
        raise _bad(f"{value!r} is not a date and time")
    if isinstance(value, int | float):
        try:
            moment = dt.datetime.fromtimestamp(value, tz=dt.UTC)
        except (OverflowError, OSError, ValueError):
            raise _bad(f"{shown(value)} is not a time: seconds since 1970 between years 1 and 9999") from None
    elif isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        moment = _parse_datetime(value)
    else:
        raise _bad(f"{shown(value)} is not a date and time")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    try:
        moment = moment.astimezone(dt.UTC)
    except OverflowError:
        raise _bad(f"{shown(value)} is out of range once in UTC") from None
    if style == "salesforce":
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"
    return moment.isoformat()
