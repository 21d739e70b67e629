"""Text transforms: ``text``, ``lower``, ``upper``, ``strip``, ``constant``, ``template``,
``value_map`` (a value looked up in a table, Monday status labels included) and ``split_name``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any

from crmsync.engine.transforms.registry import transform
from crmsync.engine.transforms.values import _as_text, _bad, _blank, _monday, bounded_text, shown


@transform("text", optional=("max_length",))
def text(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """Any value as text: numbers as written, true/false, lists and objects as JSON.

    `args.max_length` refuses longer text. Example: ``42`` → ``"42"``.
    """
    if value is None:
        return None
    out = _as_text(value)
    limit = args.get("max_length")
    if limit is not None:
        bounded_text(out, int(limit))
    return out


@transform("lower")
def lower(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """Text in lower case. Example: ``"ACME Ltd"`` → ``"acme ltd"``."""
    return None if value is None else _as_text(value).lower()


@transform("upper")
def upper(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """Text in upper case. Example: ``"gb"`` → ``"GB"``."""
    return None if value is None else _as_text(value).upper()


@transform("strip")
def strip(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """Text without surrounding white space; blank becomes null. Example: ``"  Ada "`` → ``"Ada"``."""
    if value is None:
        return None
    out = _as_text(value).strip()
    return out or None


@transform("constant", required=("value",))
def constant(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """Always `args.value`, whatever the source holds. Example: ``args: {value: Web}`` → ``"Web"``."""
    return args["value"]


@transform("template", required=("template",))
def template(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """`args.template` formatted with the whole source record (Python ``str.format``).

    Example: ``args: {template: "{first} {last}"}`` with first Ada, last Lovelace → ``"Ada Lovelace"``.
    """
    fmt = str(args["template"])
    missing = [f for f in template_fields(fmt) if f not in record]
    if missing:
        raise _bad(f"template needs field(s) {', '.join(missing)} which the record does not have")
    values = {k: ("" if v is None else v) for k, v in record.items()}
    for name in template_fields(fmt):
        if isinstance(values[name], str | int) and not isinstance(values[name], bool):
            _as_text(values[name])  # a huge value is refused before it is formatted
    try:
        return bounded_text(fmt.format_map(values))
    except (ValueError, IndexError, AttributeError, KeyError, TypeError) as exc:
        raise _bad(f"template {fmt!r} cannot be formatted: {exc}") from exc


def template_fields(fmt: str) -> list[str]:
    """The record fields a ``str.format`` template refers to (``ValueError`` if it does not parse)."""
    out: list[str] = []
    for _, name, _, _ in string.Formatter().parse(fmt):
        if name:
            base = re.split(r"[.\[]", name, maxsplit=1)[0]
            if base and base not in out:
                out.append(base)
    return out


@transform("value_map", required=("map",), optional=("default",))
def value_map(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """Look the value up in `args.map`; unmapped values take `args.default`, or are refused without one.

    Example: ``args: {map: {Working on it: Open, Done: Closed Won}}`` → ``"Done"`` → ``"Closed Won"``.
    Monday status values (``{"label": ...}``) are looked up by their label.
    """
    table = args["map"]
    if not isinstance(table, Mapping):
        raise _bad("value_map: args.map must be a mapping")
    value = _monday(value)
    if isinstance(value, Mapping):
        label = value.get("label")
        value = label.get("text") if isinstance(label, Mapping) else label
    if isinstance(value, str | int | float | bool | None) and value in table:
        return table[value]
    if isinstance(value, str | int | float) and not isinstance(value, bool) and _as_text(value) in table:
        return table[_as_text(value)]
    if "default" in args:
        return args["default"]
    if value is None:
        return None
    raise _bad(f"value {shown(value)} is not in the value map; known: {', '.join(map(str, table))}")


@transform("split_name", required=("part",))
def split_name(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """One part of a full name: `args.part` first (all but the last word) or last (the last word).

    Example: ``"Ada King Lovelace"`` → first ``"Ada King"``, last ``"Lovelace"``; ``"Cher"`` → first null,
    last ``"Cher"``.
    """
    part = args["part"]
    if part not in ("first", "last"):
        raise _bad(f"split_name: args.part must be 'first' or 'last', not {part!r}")
    if _blank(value):
        return None
    words = _as_text(value).split()
    if part == "last":
        return words[-1]
    return " ".join(words[:-1]) or None
