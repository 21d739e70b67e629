"""Custom fields: board definitions (text, number, date, checkbox, list) and card items.

Items exist only for set fields. Values are stored as Trello stores them, as strings:
``{"text": "hi"}``, ``{"number": "42"}``, ``{"date": "2018-03-13T16:00:00.000Z"}``,
``{"checked": "true"}``; a list field's item carries ``idValue`` (an option id) instead of
``value``. ``{"value": ""}`` / ``{"idValue": ""}`` clears a field. A value whose key does not
match the field's type (``{"checkbox": ...}`` for a checkbox, whose key is ``checked``) is
refused with 400. Every change appends an ``updateCustomFieldItem`` action.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from crmsync.sandbox.trello import access, views
from crmsync.sandbox.trello.actions import board_ref, card_ref, record
from crmsync.sandbox.trello.http import Call, Router, invalid_value, not_found
from crmsync.sandbox.trello.ids import normalize_date, now_iso, object_id
from crmsync.sandbox.trello.store import Record, State, resolve_pos, sort_by_pos

TYPES = ("text", "number", "date", "checkbox", "list")
#: the key of ``value`` for each type
VALUE_KEYS = {"text": "text", "number": "number", "date": "date", "checkbox": "checked"}


# -- definitions -------------------------------------------------------------------------------
def create_field(
    state: State,
    board_id: str,
    name: str,
    type_: str,
    *,
    options: list[Any] | None = None,
    pos: Any = None,
    card_front: bool = True,
) -> Record:
    if type_ not in TYPES:
        raise invalid_value("type")
    ident = object_id()
    field: Record = {
        "id": ident,
        "idModel": board_id,
        "modelType": "board",
        "fieldGroup": hashlib.sha256(ident.encode()).hexdigest(),
        "display": {"cardFront": card_front},
        "name": name,
        "pos": resolve_pos(pos, state.board_fields(board_id)),
        "type": type_,
        "isSuggestedField": False,
    }
    if type_ == "list":
        field["options"] = []
        for option in options or []:
            add_option(field, option)
    state.custom_fields[ident] = field
    return field


def add_option(field: Record, option: Any) -> Record:
    if isinstance(option, dict):
        value = option.get("value")
        text = value.get("text") if isinstance(value, dict) else option.get("text", value)
        color = option.get("color") or "none"
        pos = option.get("pos")
    else:
        text, color, pos = option, "none", None
    if not isinstance(text, str) or not text:
        raise invalid_value("value")
    created: Record = {
        "id": object_id(),
        "idCustomField": field["id"],
        "value": {"text": text},
        "color": color,
        "pos": resolve_pos(pos, field["options"]),
    }
    field["options"].append(created)
    return created


# -- items ---------------------------------------------------------------------------------------
def parse_item(field: Record, payload: dict[str, Any]) -> tuple[str, Any]:
    """``("value", {...}|None)`` or ``("idValue", id|None)``; None clears. 400 when it does not fit."""
    if field["type"] == "list":
        if "idValue" not in payload:
            raise invalid_value("value" if "value" in payload else "idValue")
        option = payload["idValue"]
        if option in (None, ""):
            return ("idValue", None)
        if not any(o["id"] == option for o in field.get("options", [])):
            raise invalid_value("idValue")
        return ("idValue", option)
    if "value" not in payload:
        raise invalid_value("value")
    value = payload["value"]
    if value in (None, ""):
        return ("value", None)
    key = VALUE_KEYS[field["type"]]
    if not isinstance(value, dict) or set(value) != {key}:
        raise invalid_value("value")
    raw = value[key]
    if field["type"] == "text":
        if not isinstance(raw, str):
            raise invalid_value("value")
        return ("value", {"text": raw})
    if field["type"] == "number":
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise invalid_value("value")
        try:
            number = float(raw)
        except ValueError:
            raise invalid_value("value") from None
        if number != number:
            raise invalid_value("value")
        text = (
            raw.strip()
            if isinstance(raw, str)
            else (str(int(number)) if number.is_integer() else repr(number))
        )
        return ("value", {"number": text})
    if field["type"] == "date":
        try:
            return ("value", {"date": normalize_date(str(raw))})
        except ValueError:
            raise invalid_value("value") from None
    if isinstance(raw, bool):
        return ("value", {"checked": "true" if raw else "false"})
    if str(raw) not in ("true", "false"):
        raise invalid_value("value")
    return ("value", {"checked": str(raw)})


def set_item(state: State, member_id: str, card: Record, field: Record, kind: str, value: Any) -> Record:
    """Set (or with ``value=None`` clear) one field of a card; returns the item as Trello does."""
    items = state.items.setdefault(card["id"], {})
    current = items.get(field["id"])
    before = current.get(kind) if current else None
    ident = current["id"] if current else object_id()
    item: Record = {
        "id": ident,
        kind: value,
        "idCustomField": field["id"],
        "idModel": card["id"],
        "modelType": "card",
    }
    if before == value:
        return item
    if value is None:
        items.pop(field["id"], None)
    else:
        items[field["id"]] = item
    card["dateLastActivity"] = now_iso()
    data = {
        "card": card_ref(card),
        "board": board_ref(state.boards[card["idBoard"]]),
        "customField": {"id": field["id"], "name": field["name"], "type": field["type"]},
        "customFieldItem": dict(item),
        "old": {kind: before},
    }
    record(state, "updateCustomFieldItem", member_id, data, "action_update_custom_field_item")
    return item


def _field_of_card(call: Call, card: Record, ident: str | None, name: str) -> Record:
    field = call.state.custom_fields.get(ident or "")
    if field is None or field["idModel"] != card["idBoard"]:
        raise invalid_value(name)
    return field


# -- HTTP --------------------------------------------------------------------------------------------
def post_field(call: Call) -> Any:
    board = call.state.param_ref(call.state.boards, call.text("idModel"), "idModel")
    access.require_board(call, board["id"])
    if (call.text("modelType") or "board") != "board":
        raise invalid_value("modelType")
    options = call.params.get("options")
    if isinstance(options, str):
        try:
            options = json.loads(options)
        except ValueError:
            raise invalid_value("options") from None
    if options is not None and not isinstance(options, list):
        raise invalid_value("options")
    field = create_field(
        call.state,
        board["id"],
        call.require("name"),
        call.require("type"),
        options=options,
        pos=call.params.get("pos"),
        card_front=call.flag("display_cardFront", True),
    )
    return views.custom_field(field)


def get_field(call: Call) -> Any:
    return views.custom_field(access.custom_field(call, call.args["field"]))


def put_field(call: Call) -> Any:
    field = access.custom_field(call, call.args["field"])
    if call.has("name"):
        field["name"] = call.require("name")
    if call.has("pos"):
        others = [f for f in call.state.board_fields(field["idModel"]) if f["id"] != field["id"]]
        field["pos"] = resolve_pos(call.params["pos"], others)
    for name in ("display/cardFront", "display_cardFront"):
        if call.has(name):
            field["display"]["cardFront"] = call.flag(name)
    return views.custom_field(field)


def delete_field(call: Call) -> Any:
    field = access.custom_field(call, call.args["field"])
    del call.state.custom_fields[field["id"]]
    for items in call.state.items.values():
        items.pop(field["id"], None)
    return {}


def get_options(call: Call) -> Any:
    field = access.custom_field(call, call.args["field"])
    return sort_by_pos(field.get("options", []))


def post_option(call: Call) -> Any:
    field = access.custom_field(call, call.args["field"])
    if field["type"] != "list":
        raise invalid_value("idCustomField")
    return add_option(field, dict(call.params))


def _option(call: Call) -> tuple[Record, Record]:
    field = access.custom_field(call, call.args["field"])
    for option in field.get("options", []):
        if option["id"] == call.args["option"]:
            return field, option
    raise not_found()


def get_option(call: Call) -> Any:
    return _option(call)[1]


def delete_option(call: Call) -> Any:
    field, option = _option(call)
    field["options"].remove(option)
    for items in call.state.items.values():
        item = items.get(field["id"])
        if item is not None and item.get("idValue") == option["id"]:
            del items[field["id"]]
    return {}


def board_fields(call: Call) -> Any:
    board = access.board(call, call.args["board"])
    return [views.custom_field(f) for f in call.state.board_fields(board["id"])]


def card_items(call: Call) -> Any:
    card = access.card(call, call.args["card"])
    return views.card_items(call.state, card["id"])


def put_item(call: Call) -> Any:
    card = access.card(call, call.args["card"])
    field = call.state.custom_field(call.args["field"])
    if field["idModel"] != card["idBoard"]:
        raise invalid_value("idCustomField")
    kind, value = parse_item(field, call.params)
    return set_item(call.state, call.member, card, field, kind, value)


def put_items(call: Call) -> Any:
    card = access.card(call, call.args["card"])
    entries = call.params.get("customFieldItems")
    if isinstance(entries, str):
        try:
            entries = json.loads(entries)
        except ValueError:
            raise invalid_value("customFieldItems") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise invalid_value("customFieldItems")
    parsed = []
    for entry in entries:
        field = _field_of_card(call, card, entry.get("idCustomField"), "idCustomField")
        parsed.append((field, *parse_item(field, entry)))
    for field, kind, value in parsed:
        set_item(call.state, call.member, card, field, kind, value)
    return views.card_items(call.state, card["id"])


def register(router: Router) -> None:
    add = router.add
    add("POST", "/customFields", post_field)
    add("GET", "/customFields/{field}", get_field)
    add("PUT", "/customFields/{field}", put_field)
    add("DELETE", "/customFields/{field}", delete_field)
    add("GET", "/customFields/{field}/options", get_options)
    add("POST", "/customFields/{field}/options", post_option)
    add("GET", "/customFields/{field}/options/{option}", get_option)
    add("DELETE", "/customFields/{field}/options/{option}", delete_option)
    add("GET", "/boards/{board}/customFields", board_fields)
    add("GET", "/cards/{card}/customFieldItems", card_items)
    add("PUT", "/cards/{card}/customField/{field}/item", put_item)
    add("PUT", "/cards/{card}/customFields", put_items)
