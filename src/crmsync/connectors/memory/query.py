"""The in-memory system's query language: just enough SQL for views and lock conditions.

- a view: ``SELECT * | f1, f2 FROM Object [WHERE <condition>] [LIMIT n]``
- a condition: ``<term> [AND <term>]...``, a term being ``Field = value`` or ``Field != value``,
  where a value is ``'text'`` (``''`` for a quote), a number, ``true``/``false``/``null``, or a
  ``:name`` parameter (bound from the view's parameters, never spliced into the text).

``Id`` names the record's id.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from crmsync.errors import ConfigError

_VIEW = re.compile(
    r"^\s*SELECT\s+(?P<fields>\*|[A-Za-z_][\w]*(?:\s*,\s*[A-Za-z_][\w]*)*)\s+FROM\s+(?P<object>[A-Za-z_][\w]*)"
    r"(?:\s+WHERE\s+(?P<where>.+?))?(?:\s+LIMIT\s+(?P<limit>\d+))?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_TERM = re.compile(
    r"^\s*(?P<field>[A-Za-z_][\w]*)\s*(?P<op>!=|=)\s*"
    r"(?P<value>'(?:[^']|'')*'|:[A-Za-z_]\w*|-?\d+(?:\.\d+)?|true|false|null)\s*$",
    re.IGNORECASE,
)
_AND = re.compile(r"\s+AND\s+(?=(?:[^']*'[^']*')*[^']*$)", re.IGNORECASE)

Row = Mapping[str, Any]


@dataclass(frozen=True)
class View:
    object_name: str
    fields: tuple[str, ...] | None
    condition: Callable[[Row], bool]
    limit: int | None


def _literal(text: str, params: Mapping[str, Any]) -> Any:
    if text.startswith("'"):
        return text[1:-1].replace("''", "'")
    if text.startswith(":"):
        name = text[1:]
        if name not in params:
            raise ConfigError(f"the query's parameter :{name} has no value")
        return params[name]
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "null":
        return None
    return float(text) if "." in text else int(text)


def condition(text: str, params: Mapping[str, Any] | None = None) -> Callable[[Row], bool]:
    """A predicate over a record's fields (with ``Id``) for a condition text."""
    values = params or {}
    terms = []
    for part in _AND.split(text.strip()):
        match = _TERM.match(part)
        if match is None:
            raise ConfigError(f"the memory system cannot read the condition {part.strip()!r}")
        terms.append((match["field"], match["op"], _literal(match["value"], values)))

    def test(row: Row) -> bool:
        return all((row.get(f) == v) == (op == "=") for f, op, v in terms)

    return test


def view(text: str, params: Mapping[str, Any]) -> View:
    match = _VIEW.match(text)
    if match is None:
        raise ConfigError(f"the memory system cannot read the query {text!r} (SELECT … FROM … WHERE …)")
    fields = None if match["fields"] == "*" else tuple(f.strip() for f in match["fields"].split(","))
    where = match["where"]
    return View(
        object_name=match["object"],
        fields=fields,
        condition=condition(where, params) if where else (lambda row: True),
        limit=int(match["limit"]) if match["limit"] else None,
    )
