r"""SOQL literals and parameter binding: values never enter a query as raw text.

``format_soql("SELECT Id FROM Contact WHERE LastName = :name AND Id IN :ids", name="O'Brien", ids=["003A"])``
gives ``SELECT Id FROM Contact WHERE LastName = 'O\'Brien' AND Id IN ('003A')``.

Literals (fact sheet §3): strings single-quoted with ``\' \" \\ \n \r \t \b \f`` escaped (other
control characters as ``\uXXXX``); numbers; ``true``/``false``; ``null``; dates ``2024-06-30`` and
datetimes ``2024-06-30T10:30:00Z`` unquoted (UTC); lists, tuples and sets as ``(a, b)`` for ``IN``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

_ESCAPES = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}
_LIKE_ESCAPES = {"_": "\\_", "%": "\\%"}


def _escape_char(ch: str) -> str:
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    if ord(ch) < 0x20 or ord(ch) == 0x7F:
        return f"\\u{ord(ch):04x}"
    return ch


def quote_string(value: str) -> str:
    """A SOQL string literal: ``'...'`` with every special character escaped."""
    return "'" + "".join(_escape_char(ch) for ch in value) + "'"


@dataclass(frozen=True)
class Like:
    """A LIKE pattern: ``text`` matched literally (its ``%`` and ``_`` escaped), between wildcards.

    ``Like.contains("50%")`` renders ``'%50\\%%'``.
    """

    text: str
    prefix: str = ""
    suffix: str = ""

    def __post_init__(self) -> None:
        if set(self.prefix + self.suffix) - {"%", "_"}:
            raise ValueError("LIKE prefix and suffix may hold only the wildcards % and _")

    @classmethod
    def contains(cls, text: str) -> Like:
        return cls(text, "%", "%")

    @classmethod
    def starts_with(cls, text: str) -> Like:
        return cls(text, "", "%")

    @classmethod
    def ends_with(cls, text: str) -> Like:
        return cls(text, "%", "")

    def literal(self) -> str:
        body = "".join(_LIKE_ESCAPES.get(ch) or _escape_char(ch) for ch in self.text)
        return f"'{self.prefix}{body}{self.suffix}'"


def escape(value: Any) -> str:
    """The SOQL literal for ``value``; raises ``TypeError``/``ValueError`` for what has none."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Like):
        return value.literal()
    if isinstance(value, str):
        return quote_string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"SOQL has no literal for {value!r}")
        return format(Decimal(repr(value)), "f")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"SOQL has no literal for {value!r}")
        return format(value, "f")
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("SOQL datetimes must be timezone-aware (naive datetimes are ambiguous)")
        utc = value.astimezone(dt.UTC)
        stamp = utc.strftime("%Y-%m-%dT%H:%M:%S")
        if utc.microsecond:
            stamp += f".{utc.microsecond // 1000:03d}"
        return stamp + "Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list | tuple | set | frozenset):
        return _in_list(value)
    raise TypeError(f"SOQL has no literal for a {type(value).__name__}")


def _in_list(values: Iterable[Any]) -> str:
    items = list(values)
    if not items:
        raise ValueError("an IN list needs at least one value")
    if any(isinstance(v, list | tuple | set | frozenset) for v in items):
        raise TypeError("IN lists cannot be nested")
    if isinstance(values, set | frozenset):
        items = sorted(items, key=repr)  # a stable query text
    return "(" + ", ".join(escape(v) for v in items) + ")"


_TOKEN = re.compile(
    r"""
    (?P<string>'(?:[^'\\]|\\.)*')      # a quoted string of the template, copied as it is
  | (?P<stray>')                       # a quote that opens no complete string
  | (?P<param>:(?P<name>[A-Za-z_][A-Za-z0-9_]*))
    """,
    re.VERBOSE | re.DOTALL,
)


def format_soql(template: str, /, **params: Any) -> str:
    """Bind each ``:name`` of ``template`` to the literal of ``params[name]``.

    ``:name`` inside the template's own quoted strings is left alone. A name without a value, or
    a value no name uses, raises ``KeyError`` (a typo must not silently change a query).
    """
    used: set[str] = set()

    def bind(match: re.Match[str]) -> str:
        if match.group("string") is not None:
            return match.group("string")
        if match.group("stray") is not None:
            raise ValueError("unterminated string literal in the SOQL template")
        name = match.group("name")
        if name not in params:
            raise KeyError(f"SOQL parameter :{name} has no value")
        used.add(name)
        return escape(params[name])

    text = _TOKEN.sub(bind, template)
    unused = set(params) - used
    if unused:
        raise KeyError(f"SOQL parameters not used by the query: {', '.join(sorted(unused))}")
    return text
