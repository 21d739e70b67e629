"""Column values: monday's shapes ⇄ the plain values flows map.

One plain value per column type, the same whether it was read through the API (``value`` JSON
string, ``text``, typed fragments) or arrived in a webhook (``value`` objects with internal type
names such as ``color`` for status):

==================  ============================  =========================================
type                plain value                   written as
==================  ============================  =========================================
status              the label, ``"Done"``         ``{"label": "Done"}`` (an int: ``{"index"}``)
text                ``"plain"``                   ``"plain"``
long_text           ``"plain"``                   ``{"text": "plain"}``
numbers             ``42`` / ``4.5``              ``"42"``
date                ``"2025-02-05"`` or           ``{"date": "2025-02-05", "time": "10:00:00"}``
                    ``"2025-02-05T10:00:00Z"``    (UTC)
people              ``[1, 2]`` (user/team ids)    ``{"personsAndTeams": [{"id": 1, "kind": "person"}]}``
email               ``"a@b.com"``                 ``{"email": "a@b.com", "text": "a@b.com"}``
phone               ``"+15551234567"``            ``{"phone": "+15551234567"}``
link                ``"https://…"``               ``{"url": "https://…", "text": "https://…"}``
dropdown            ``["A", "B"]`` (labels)       ``{"labels": ["A", "B"]}``
checkbox            ``True`` / ``False``          ``{"checked": "true"}`` / ``null``
board_relation      ``[123, 456]`` (item ids)     ``{"item_ids": [123, 456]}``
other types         the display ``text``          not written
==================  ============================  =========================================

An empty column is ``None`` (``False`` for a checkbox, ``[]`` for list types); writing ``None``
clears it. A value already in monday's write shape (a dict) is sent as it is.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

#: monday's internal type names (webhooks, ``error_data.column_type``) → the API's
API_TYPES = {
    "color": "status",
    "numeric": "numbers",
    "multiple-person": "people",
    "long-text": "long_text",
    "boolean": "checkbox",
    "board-relation": "board_relation",
    "subtasks": "subtasks",
}
LIST_TYPES = frozenset({"people", "dropdown", "board_relation"})


def api_type(column_type: str | None) -> str:
    """The API's name of a column type given either name (``color`` → ``status``)."""
    name = column_type or "text"
    return API_TYPES.get(name, name)


def empty(column_type: str) -> Any:
    kind = api_type(column_type)
    if kind == "checkbox":
        return False
    if kind in LIST_TYPES:
        return []
    return None


def _loads(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _number(value: Any) -> int | float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return int(number) if number.is_integer() and "." not in str(value) else number


def _date(value: Mapping[str, Any]) -> str | None:
    day = value.get("date")
    if not day:
        return None
    clock = value.get("time")
    return f"{day}T{clock}Z" if clock else str(day)


def _ids(entries: Any, key: str) -> list[int]:
    out: list[int] = []
    for entry in entries or []:
        raw: Any = entry.get(key) if isinstance(entry, Mapping) else entry
        try:
            out.append(int(raw))
        except (TypeError, ValueError):
            continue
    return out


def decode(column_type: str | None, value: Any, text: str | None = None) -> Any:
    """The plain value of a column from its API ``value`` (JSON text or decoded) or a webhook value.

    ``text`` (the API's display text) fills in where the value alone does not say (status labels,
    dropdown labels, unsupported types).
    """
    kind = api_type(column_type)
    data = _loads(value)
    if data is None or data == "" or data == {}:
        if kind == "status" and text:
            return text
        if text and kind not in _KNOWN:
            return text
        return empty(kind)
    if kind == "status":
        if isinstance(data, Mapping):
            label = data.get("label")
            if isinstance(label, Mapping):
                return label.get("text") or text or None
            if isinstance(label, str):
                return label
        return text or None
    if kind == "text":
        if isinstance(data, Mapping):
            return data.get("value") if "value" in data else data.get("text")
        return str(data)
    if kind == "long_text":
        if isinstance(data, Mapping):
            return data.get("text")
        return str(data)
    if kind == "numbers":
        if isinstance(data, Mapping):
            return _number(data.get("value"))
        return _number(data)
    if kind == "date":
        return _date(data) if isinstance(data, Mapping) else str(data)
    if kind == "people":
        return _ids(data.get("personsAndTeams") if isinstance(data, Mapping) else data, "id")
    if kind == "email":
        return data.get("email") if isinstance(data, Mapping) else str(data)
    if kind == "phone":
        return data.get("phone") if isinstance(data, Mapping) else str(data)
    if kind == "link":
        return data.get("url") if isinstance(data, Mapping) else str(data)
    if kind == "dropdown":
        if isinstance(data, Mapping) and "chosenValues" in data:
            return [str(v.get("name")) for v in data["chosenValues"] or [] if isinstance(v, Mapping)]
        if isinstance(data, Mapping) and "labels" in data:
            return [str(v) for v in data["labels"] or []]
        return [part.strip() for part in (text or "").split(",") if part.strip()]
    if kind == "checkbox":
        if isinstance(data, Mapping):
            checked = data.get("checked")
            return checked is True or str(checked).lower() == "true"
        return bool(data)
    if kind == "board_relation":
        if isinstance(data, Mapping) and "linkedPulseIds" in data:
            return _ids(data["linkedPulseIds"], "linkedPulseId")
        if isinstance(data, Mapping):
            return _ids(data.get("item_ids") or data.get("linked_item_ids"), "id")
        return _ids(data, "id")
    return text if text is not None else data


_KNOWN = frozenset(
    {
        "status",
        "text",
        "long_text",
        "numbers",
        "date",
        "people",
        "email",
        "phone",
        "link",
        "dropdown",
        "checkbox",
        "board_relation",
    }
)


def decode_column_value(column: Mapping[str, Any]) -> Any:
    """The plain value of one ``column_values`` entry of an API item (``id type text value`` and
    the ``linked_item_ids`` / dropdown ``values`` fragments)."""
    kind = api_type(str(column.get("type") or "text"))
    if kind == "board_relation" and column.get("linked_item_ids") is not None:
        return _ids(column.get("linked_item_ids"), "id")
    if kind == "dropdown" and isinstance(column.get("values"), list):
        return [str(v.get("label")) for v in column["values"] if isinstance(v, Mapping)]
    return decode(kind, column.get("value"), column.get("text"))


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def encode(column_type: str | None, value: Any) -> Any:
    """monday's write shape for a plain value of a column of ``column_type`` (None clears)."""
    kind = api_type(column_type)
    value = _plain(value)
    if value is None or value == "" or value == []:
        return None if kind != "board_relation" else {"item_ids": []}
    if isinstance(value, dict):
        return value  # already in monday's shape
    if kind == "status":
        return (
            {"index": value}
            if isinstance(value, int) and not isinstance(value, bool)
            else {"label": str(value)}
        )
    if kind == "text":
        return str(value)
    if kind == "long_text":
        return {"text": str(value)}
    if kind == "numbers":
        return str(value)
    if kind == "date":
        return _encode_date(value)
    if kind == "people":
        items = value if isinstance(value, list | tuple) else [value]
        return {"personsAndTeams": [_person(v) for v in items]}
    if kind == "email":
        return {"email": str(value), "text": str(value)}
    if kind == "phone":
        return {"phone": str(value)}
    if kind == "link":
        return {"url": str(value), "text": str(value)}
    if kind == "dropdown":
        items = value if isinstance(value, list | tuple) else [value]
        return {"labels": [str(v) for v in items]}
    if kind == "checkbox":
        checked = value if isinstance(value, bool) else str(value).lower() in ("true", "1", "yes", "v")
        return {"checked": "true"} if checked else None
    if kind == "board_relation":
        items = value if isinstance(value, list | tuple) else [value]
        return {"item_ids": [int(v) for v in items]}
    return value


def _person(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return {"id": int(value["id"]), "kind": str(value.get("kind") or "person")}
    return {"id": int(value), "kind": "person"}


def _encode_date(value: Any) -> dict[str, str]:
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return {"date": value.strftime("%Y-%m-%d"), "time": value.strftime("%H:%M:%S")}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    text = str(value).strip()
    if len(text) > 10:
        try:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return {"date": text[:10]}
        return _encode_date(parsed)
    return {"date": text}


#: a webhook value's tell-tale key → the column type it belongs to
_SHAPES = (
    ("label", "status"),
    ("personsAndTeams", "people"),
    ("chosenValues", "dropdown"),
    ("linkedPulseIds", "board_relation"),
    ("checked", "checkbox"),
    ("date", "date"),
    ("email", "email"),
    ("phone", "phone"),
    ("url", "link"),
    ("text", "long_text"),
)


def infer_type(value: Any) -> str:
    """The column type a webhook value belongs to, from its shape (``create_pulse`` gives no types)."""
    data = _loads(value)
    if isinstance(data, Mapping):
        for key, kind in _SHAPES:
            if key in data:
                return kind
        if "value" in data:
            inner = data["value"]
            return "numbers" if isinstance(inner, int | float) and not isinstance(inner, bool) else "text"
    return "text"
