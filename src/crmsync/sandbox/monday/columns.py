"""Column types: how a write is validated and stored, and how a stored value reads back.

Per type, one stored form (a small dict) and four views of it:

==================  ============================================  =========================
type (internal)     write forms accepted                          ``text``
==================  ============================================  =========================
status (color)      ``{"label"}``, ``{"index"}``, ``"Done"``        the label
text                ``"plain"``                                   the text
long_text           ``{"text"}``, ``"plain"``                     the text
numbers (numeric)   ``"42"``, ``42``                              ``"42"``
date                ``{"date","time"?}``, ``"2024-01-15[ 10:00:00]"``  ``2024-01-15[ 10:00]``
people              ``{"personsAndTeams":[{id,kind}]}``, ``"1,2"``   names, comma-separated
(multiple-person)
email               ``{"email","text"}``, ``"a@b.com shown"``        the address
phone               ``{"phone","countryShortName"}``, ``"+1555 US"``  the number
link                ``{"url","text"}``, ``"https://x shown"``        ``shown - url``
dropdown            ``{"labels":[..]}``, ``{"ids":[..]}``, ``"A,B"``  labels, comma-separated
checkbox (boolean)  ``{"checked":"true"}``                        ``"v"`` when checked
board_relation      ``{"item_ids":[..]}``                          linked item names
(board-relation)
==================  ============================================  =========================

``null``, ``""``, ``{}`` and ``[]`` (or the type's own empty shape) clear a value. A value of
the wrong shape, an unknown status or dropdown label (unless ``create_labels_if_missing``), a
user or linked item that does not exist raises ``ColumnValueException`` with the internal type
name in ``error_data.column_type``.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, time
from typing import Any, Protocol

from crmsync.sandbox.monday.errors import MondayError, column_value_error
from crmsync.sandbox.monday.store import Column, Item, User

INTERNAL_TYPES = {
    "name": "name",
    "status": "color",
    "text": "text",
    "long_text": "long-text",
    "numbers": "numeric",
    "date": "date",
    "people": "multiple-person",
    "email": "email",
    "phone": "phone",
    "link": "link",
    "dropdown": "dropdown",
    "checkbox": "boolean",
    "board_relation": "board-relation",
}
SUPPORTED = tuple(t for t in INTERNAL_TYPES if t != "name")

#: the GraphQL type of each column type's value (``... on StatusValue``)
VALUE_TYPENAMES = {
    "status": "StatusValue",
    "text": "TextValue",
    "long_text": "LongTextValue",
    "numbers": "NumbersValue",
    "date": "DateValue",
    "people": "PeopleValue",
    "email": "EmailValue",
    "phone": "PhoneValue",
    "link": "LinkValue",
    "dropdown": "DropdownValue",
    "checkbox": "CheckboxValue",
    "board_relation": "BoardRelationValue",
}

#: status label colours by index: (color, border, var_name); index 5 is the grey default
STATUS_STYLES: dict[int, tuple[str, str, str]] = {
    0: ("#fdab3d", "#e99729", "orange"),
    1: ("#00c875", "#00b461", "green-shadow"),
    2: ("#df2f4a", "#ce3048", "red-shadow"),
    3: ("#007eb5", "#3db0df", "dark-blue"),
    4: ("#9d50dd", "#9238af", "purple"),
    5: ("#c4c4c4", "#b0b0b0", "grey"),
    6: ("#579bfc", "#4387e8", "bright-blue"),
    7: ("#ff642e", "#ff5a2e", "dark-orange"),
    8: ("#ffcb00", "#c0ab1b", "yellow"),
    9: ("#ff007f", "#e01279", "dark-pink"),
    10: ("#037f4c", "#116846", "grass-green"),
    11: ("#a25ddc", "#9238af", "dark-purple"),
}

_PHONE = re.compile(r"^\+?[0-9]{4,20}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class Lookup(Protocol):
    """What reading and validating values needs from the account."""

    def user(self, user_id: int) -> User | None: ...

    def item(self, item_id: int) -> Item | None: ...


def internal_type(column: Column) -> str:
    return INTERNAL_TYPES.get(column.type, column.type)


def is_empty(raw: Any) -> bool:
    return raw is None or raw == "" or raw == {} or raw == []


# -- writes ------------------------------------------------------------------------------------
def parse_write(
    column: Column, raw: Any, *, lookup: Lookup, create_labels: bool, changed_at: str
) -> dict[str, Any] | None:
    """Validate ``raw`` (decoded JSON or a simple string) and return the stored form (None clears)."""
    if is_empty(raw):
        return None
    kind = column.type
    parser = _PARSERS.get(kind)
    if parser is None:
        raise MondayError(
            "ColumnValueException",
            f"Column type {kind} cannot be changed through the API",
            error_data={"column_type": internal_type(column)},
        )
    stored = parser(column, raw, lookup, create_labels)
    if stored is None:
        return None
    if kind not in ("text", "numbers"):
        stored["changed_at"] = changed_at
    return stored


def _bad(column: Column, raw: Any, *, label: bool = False) -> MondayError:
    return column_value_error(internal_type(column), raw, label=label)


def _status(column: Column, raw: Any, lookup: Lookup, create: bool) -> dict[str, Any] | None:
    labels: dict[str, str] = column.settings.setdefault("labels", {})
    if isinstance(raw, dict):
        if "index" in raw and raw["index"] is not None:
            try:
                index = int(raw["index"])
            except (TypeError, ValueError):
                raise _bad(column, raw) from None
            if str(index) not in labels:
                raise _bad(column, raw, label=True)
            return {"index": index}
        label = raw.get("label")
    else:
        label = raw
    if not isinstance(label, str):
        raise _bad(column, raw)
    if label == "":
        return None
    for key, text in labels.items():
        if text == label:
            return {"index": int(key)}
    if not create:
        raise _bad(column, raw, label=True)
    free = next(i for i in (*range(5), *range(6, 20), *range(101, 200)) if str(i) not in labels)
    labels[str(free)] = label
    color, border, var_name = STATUS_STYLES.get(free, STATUS_STYLES[6])
    column.settings.setdefault("labels_colors", {})[str(free)] = {
        "color": color,
        "border": border,
        "var_name": var_name,
    }
    return {"index": free}


def _text(column: Column, raw: Any, lookup: Lookup, create: bool) -> dict[str, Any] | None:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str):
        raise _bad(column, raw)
    return {"text": raw}


def _long_text(column: Column, raw: Any, lookup: Lookup, create: bool) -> dict[str, Any] | None:
    if isinstance(raw, dict):
        raw = raw.get("text")
    if not isinstance(raw, str):
        raise _bad(column, raw)
    return {"text": raw} if raw else None


def _numbers(column: Column, raw: Any, lookup: Lookup, create: bool) -> dict[str, Any] | None:
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise _bad(column, raw)
    text = str(raw).strip()
    try:
        number = float(text)
    except ValueError:
        raise _bad(column, raw) from None
    if number != number or number in (float("inf"), float("-inf")):
        raise _bad(column, raw)
    return {"number": text}


def _date(column: Column, raw: Any, lookup: Lookup, create: bool) -> dict[str, Any] | None:
    if isinstance(raw, str):
        head, _, tail = raw.strip().partition(" ")
        raw_dict: dict[str, Any] = {"date": head, "time": tail or None}
    elif isinstance(raw, dict):
        raw_dict = raw
    else:
        raise _bad(column, raw)
    day = str(raw_dict.get("date") or "")
    if not day:
        return None
    clock: str | None = None
    try:
        date.fromisoformat(day)
        if raw_dict.get("time"):
            clock = time.fromisoformat(str(raw_dict["time"])).strftime("%H:%M:%S")
    except ValueError:
        raise _bad(column, raw) from None
    if len(day) != 10:
        raise _bad(column, raw)
    return {"date": day, "time": clock}


def _people(column: Column, raw: Any, lookup: Lookup, create: bool) -> dict[str, Any] | None:
    entries: list[dict[str, Any]] = []
    if isinstance(raw, str):
        entries = [{"id": part.strip(), "kind": "person"} for part in raw.split(",") if part.strip()]
    elif isinstance(raw, dict) and isinstance(raw.get("personsAndTeams"), list):
        entries = raw["personsAndTeams"]
    else:
        raise _bad(column, raw)
    out = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise _bad(column, raw)
        kind = entry.get("kind", "person")
        try:
            user_id = int(entry.get("id"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise _bad(column, raw) from None
        user = lookup.user(user_id)
        if kind not in ("person", "team") or user is None or user.kind != kind:
            raise _bad(column, raw)
        out.append({"id": user_id, "kind": kind})
    return {"personsAndTeams": out} if out else None


def _split_first(raw: str) -> tuple[str, str]:
    head, _, tail = raw.strip().partition(" ")
    return head, tail.strip()


def _email(column: Column, raw: Any, lookup: Lookup, create: bool) -> dict[str, Any] | None:
    if isinstance(raw, str):
        address, shown = _split_first(raw)
    elif isinstance(raw, dict):
        address, shown = str(raw.get("email") or ""), raw.get("text") or ""
    else:
        raise _bad(column, raw)
    if not address:
        return None
    if not isinstance(address, str) or not _EMAIL.match(address) or not isinstance(shown, str):
        raise _bad(column, raw)
    return {"email": address, "text": shown or address}


def _phone(column: Column, raw: Any, lookup: Lookup, create: bool) -> dict[str, Any] | None:
    if isinstance(raw, str):
        number, country = _split_first(raw)
    elif isinstance(raw, dict):
        number, country = raw.get("phone", ""), raw.get("countryShortName") or ""
    else:
        raise _bad(column, raw)
    if not number:
        return None
    if not isinstance(number, str) or not _PHONE.match(number.replace(" ", "").replace("-", "")):
        raise _bad(column, raw)
    if country and (not isinstance(country, str) or not re.fullmatch(r"[A-Za-z]{2}", country)):
        raise _bad(column, raw)
    return {"phone": number, "countryShortName": country.upper() if country else None}


def _link(column: Column, raw: Any, lookup: Lookup, create: bool) -> dict[str, Any] | None:
    if isinstance(raw, str):
        url, shown = _split_first(raw)
    elif isinstance(raw, dict):
        url, shown = raw.get("url", ""), raw.get("text") or ""
    else:
        raise _bad(column, raw)
    if not url:
        return None
    if not isinstance(url, str) or not isinstance(shown, str) or " " in url:
        raise _bad(column, raw)
    return {"url": url, "text": shown or url}


def _dropdown(column: Column, raw: Any, lookup: Lookup, create: bool) -> dict[str, Any] | None:
    options: list[dict[str, Any]] = column.settings.setdefault("labels", [])
    by_name = {o["name"]: o["id"] for o in options}
    by_id = {o["id"] for o in options}
    ids: list[int] = []
    if isinstance(raw, str):
        names: list[Any] = [p.strip() for p in raw.split(",") if p.strip()]
    elif isinstance(raw, dict) and isinstance(raw.get("labels"), list):
        names = raw["labels"]
    elif isinstance(raw, dict) and isinstance(raw.get("ids"), list):
        for value in raw["ids"]:
            try:
                option = int(value)
            except (TypeError, ValueError):
                raise _bad(column, raw) from None
            if option not in by_id:
                raise _bad(column, raw, label=True)
            ids.append(option)
        return {"ids": ids} if ids else None
    else:
        raise _bad(column, raw)
    for name in names:
        if not isinstance(name, str):
            raise _bad(column, raw)
        if name not in by_name:
            if not create:
                raise _bad(column, raw, label=True)
            new_id = max(by_id, default=0) + 1
            options.append({"id": new_id, "name": name})
            by_name[name] = new_id
            by_id.add(new_id)
        ids.append(by_name[name])
    return {"ids": ids} if ids else None


def _checkbox(column: Column, raw: Any, lookup: Lookup, create: bool) -> dict[str, Any] | None:
    if not isinstance(raw, dict) or "checked" not in raw:
        raise _bad(column, raw)
    checked = raw["checked"]
    if checked in (True, "true"):
        return {"checked": "true"}
    if checked in (False, "false", None):
        return None
    raise _bad(column, raw)


def _board_relation(column: Column, raw: Any, lookup: Lookup, create: bool) -> dict[str, Any] | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("item_ids"), list):
        raise _bad(column, raw)
    allowed = {int(b) for b in column.settings.get("boardIds", [])}
    ids: list[int] = []
    for value in raw["item_ids"]:
        try:
            item_id = int(value)
        except (TypeError, ValueError):
            raise _bad(column, raw) from None
        item = lookup.item(item_id)
        if item is None or item.state == "deleted" or (allowed and item.board_id not in allowed):
            raise _bad(column, raw)
        if item_id not in ids:
            ids.append(item_id)
    return {"item_ids": ids} if ids else None


_PARSERS = {
    "status": _status,
    "text": _text,
    "long_text": _long_text,
    "numbers": _numbers,
    "date": _date,
    "people": _people,
    "email": _email,
    "phone": _phone,
    "link": _link,
    "dropdown": _dropdown,
    "checkbox": _checkbox,
    "board_relation": _board_relation,
}


# -- reads -------------------------------------------------------------------------------------
def _number(text: str) -> float | int:
    value = float(text)
    return int(value) if value.is_integer() and "." not in text else value


def _dropdown_names(column: Column, stored: dict[str, Any]) -> list[dict[str, Any]]:
    options = {o["id"]: o["name"] for o in column.settings.get("labels", [])}
    return [{"id": i, "name": options.get(i, "")} for i in stored.get("ids", [])]


def status_label(column: Column, index: int) -> str:
    return str(column.settings.get("labels", {}).get(str(index), ""))


def api_value(column: Column, stored: dict[str, Any] | None, *, legacy_relations: bool = False) -> str | None:
    """The ``value`` field: a JSON-encoded string, or None when empty."""
    kind = column.type
    if kind == "board_relation":
        if not legacy_relations or stored is None:
            return None
        return _dumps({"linkedPulseIds": [{"linkedPulseId": i} for i in stored["item_ids"]]})
    if stored is None:
        return None
    changed = stored.get("changed_at")
    value: Any
    if kind == "status":
        value = {"index": stored["index"], "post_id": None, "changed_at": changed}
    elif kind == "text":
        value = stored["text"]
    elif kind == "numbers":
        value = stored["number"]
    elif kind == "long_text":
        value = {"text": stored["text"], "changed_at": changed}
    elif kind == "date":
        value = {"date": stored["date"], "time": stored["time"], "changed_at": changed}
    elif kind == "checkbox":
        value = {"checked": "true", "changed_at": changed}
    else:
        value = dict(stored)
    return _dumps(value)


def text_of(column: Column, stored: dict[str, Any] | None, lookup: Lookup) -> str:
    """The ``text`` field: what the board shows (``""`` when empty)."""
    if stored is None:
        return ""
    kind = column.type
    if kind == "status":
        return status_label(column, stored["index"])
    if kind in ("text", "long_text"):
        return str(stored["text"])
    if kind == "numbers":
        return str(stored["number"])
    if kind == "date":
        return str(stored["date"]) + (f" {stored['time'][:5]}" if stored.get("time") else "")
    if kind == "people":
        users = [lookup.user(p["id"]) for p in stored["personsAndTeams"]]
        return ", ".join(u.name for u in users if u is not None)
    if kind == "email":
        return str(stored["email"])
    if kind == "phone":
        return str(stored["phone"])
    if kind == "link":
        shown = stored.get("text")
        return f"{shown} - {stored['url']}" if shown and shown != stored["url"] else str(stored["url"])
    if kind == "dropdown":
        return ", ".join(o["name"] for o in _dropdown_names(column, stored))
    if kind == "checkbox":
        return "v"
    if kind == "board_relation":
        items = [lookup.item(i) for i in stored["item_ids"]]
        return ", ".join(i.name for i in items if i is not None)
    return ""


def typed_fields(column: Column, stored: dict[str, Any] | None, lookup: Lookup) -> dict[str, Any]:
    """The fields of the type's own GraphQL value type (``... on StatusValue {index label}``)."""
    s = stored or {}
    kind = column.type
    if kind == "status":
        index = s.get("index")
        style = STATUS_STYLES.get(index if index is not None else 5, STATUS_STYLES[5])
        done = index is not None and index in column.settings.get("done_colors", [1])
        return {
            "index": index,
            "label": status_label(column, index) if index is not None else None,
            "is_done": done,
            "label_style": {"color": style[0], "border": style[1]},
            "update_id": None,
            "updated_at": s.get("changed_at"),
        }
    if kind == "numbers":
        return {"number": _number(s["number"]) if s else None, "symbol": "", "direction": "left"}
    if kind == "date":
        return {"date": s.get("date"), "time": s.get("time"), "updated_at": s.get("changed_at")}
    if kind == "people":
        return {"persons_and_teams": s.get("personsAndTeams", []), "updated_at": s.get("changed_at")}
    if kind == "email":
        return {"email": s.get("email"), "label": s.get("text")}
    if kind == "phone":
        return {"phone": s.get("phone"), "country_short_name": s.get("countryShortName")}
    if kind == "link":
        return {"url": s.get("url"), "url_text": s.get("text")}
    if kind == "dropdown":
        return {"values": [{"id": o["id"], "label": o["name"]} for o in _dropdown_names(column, s)]}
    if kind == "checkbox":
        return {"checked": bool(s)}
    if kind == "board_relation":
        ids = s.get("item_ids", [])
        items = [lookup.item(i) for i in ids]
        return {
            "linked_item_ids": ids,
            "linked_items": [i for i in items if i is not None],
            "display_value": text_of(column, stored, lookup),
        }
    return {}


def webhook_value(column: Column, stored: dict[str, Any] | None, lookup: Lookup) -> dict[str, Any] | None:
    """``value``/``previousValue`` of an ``update_column_value`` delivery (None when empty)."""
    if stored is None:
        return None
    kind = column.type
    changed = stored.get("changed_at")
    if kind == "status":
        index = stored["index"]
        color, border, var_name = STATUS_STYLES.get(index, STATUS_STYLES[6])
        return {
            "label": {
                "index": index,
                "text": status_label(column, index),
                "style": {"color": color, "border": border, "var_name": var_name},
                "is_done": index in column.settings.get("done_colors", [1]),
            },
            "post_id": None,
        }
    if kind == "text":
        return {"value": stored["text"]}
    if kind == "numbers":
        return {"value": _number(stored["number"]), "unit": None}
    if kind == "long_text":
        return {"text": stored["text"], "changed_at": changed}
    if kind == "date":
        return {"date": stored["date"], "icon": None, "time": stored["time"], "changed_at": changed}
    if kind == "dropdown":
        return {"chosenValues": _dropdown_names(column, stored)}
    if kind == "checkbox":
        return {"checked": True, "changed_at": changed}
    if kind == "board_relation":
        return {"linkedPulseIds": [{"linkedPulseId": i} for i in stored["item_ids"]], "changed_at": changed}
    return dict(stored)


def compare_keys(column: Column, stored: dict[str, Any] | None, lookup: Lookup) -> set[str]:
    """The strings a ``compare_value`` may name to match this value (``any_of``, by column values)."""
    if stored is None:
        return {""}
    keys = {text_of(column, stored, lookup)}
    kind = column.type
    if kind == "status":
        keys.add(str(stored["index"]))
    elif kind == "people":
        for p in stored["personsAndTeams"]:
            keys.update({str(p["id"]), f"{p['kind']}-{p['id']}"})
    elif kind == "dropdown":
        keys.update(str(i) for i in stored["ids"])
        keys.update(o["name"] for o in _dropdown_names(column, stored))
    elif kind == "board_relation":
        keys.update(str(i) for i in stored["item_ids"])
    return keys


def sort_key(column: Column, stored: dict[str, Any] | None, lookup: Lookup) -> tuple[int, Any]:
    """Orders values for ``order_by`` and range operators (empty values sort first)."""
    if stored is None:
        return (0, "")
    if column.type == "numbers":
        return (1, float(stored["number"]))
    if column.type == "date":
        return (1, f"{stored['date']}T{stored.get('time') or '00:00:00'}")
    return (1, text_of(column, stored, lookup).lower())


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def parse_date_or_datetime(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
