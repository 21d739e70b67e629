"""The action log: every mutation appends an action of Trello's shape, read back by
``GET /boards/{id}/actions`` and ``GET /cards/{id}/actions`` and delivered by webhooks.

An action is ``{id, idMemberCreator, type, date, data, appCreator, limits, display, memberCreator}``;
``data`` carries compact references (``card{id,name,idShort,shortLink}``, ``list{id,name}``,
``board{id,name,shortLink}``) plus what the type needs (``old``, ``listBefore``/``listAfter``,
``customFieldItem``...). A ``deleteCard`` action names no card: ``card{id,idShort}`` only.
"""

from __future__ import annotations

from typing import Any

from crmsync.sandbox.trello import views
from crmsync.sandbox.trello.http import Call, invalid_value
from crmsync.sandbox.trello.ids import id_time, is_object_id, iso, now_iso, object_id, parse_date
from crmsync.sandbox.trello.store import Record, State

MAX_LIMIT = 1000


def card_ref(card: Record, *extra: str) -> dict[str, Any]:
    ref = {"id": card["id"], "name": card["name"], "idShort": card["idShort"], "shortLink": card["shortLink"]}
    for name in extra:
        ref[name] = card[name]
    return ref


def list_ref(rec: Record) -> dict[str, Any]:
    return {"id": rec["id"], "name": rec["name"]}


def board_ref(rec: Record) -> dict[str, Any]:
    return {"id": rec["id"], "name": rec["name"], "shortLink": rec["shortLink"]}


def card_context(state: State, card: Record) -> dict[str, Any]:
    """``data.card``, ``data.list`` and ``data.board`` of an action about ``card``."""
    return {
        "card": card_ref(card),
        "list": list_ref(state.lists[card["idList"]]),
        "board": board_ref(state.boards[card["idBoard"]]),
    }


def record(
    state: State,
    type_: str,
    member_id: str,
    data: dict[str, Any],
    translation_key: str,
    *,
    member: str | None = None,
) -> Record:
    """Append an action (and tell webhooks); ``member`` is the member an add/remove is about."""
    creator = state.members[member_id]
    entities: dict[str, Any] = {
        "memberCreator": {
            "type": "member",
            "id": member_id,
            "username": creator["username"],
            "text": creator["fullName"],
        },
    }
    if "card" in data:
        entities["card"] = {"type": "card", "id": data["card"]["id"], "text": data["card"].get("name", "")}
    if "list" in data:
        entities["list"] = {"type": "list", "id": data["list"]["id"], "text": data["list"]["name"]}
    if "listBefore" in data:
        entities["listBefore"] = {
            "type": "list",
            "id": data["listBefore"]["id"],
            "text": data["listBefore"]["name"],
        }
        entities["listAfter"] = {
            "type": "list",
            "id": data["listAfter"]["id"],
            "text": data["listAfter"]["name"],
        }
    action: Record = {
        "id": object_id(),
        "idMemberCreator": member_id,
        "type": type_,
        "date": now_iso(),
        "data": data,
        "appCreator": None,
        "limits": {"reactions": {"perAction": {"status": "ok", "disableAt": 900, "warnAt": 720}}}
        if type_ == "commentCard"
        else {},
        "display": {"translationKey": translation_key, "entities": entities},
        "memberCreator": views.member_creator(creator),
    }
    if member is not None and member in state.members:
        action["member"] = views.member_creator(state.members[member])
    board = data.get("board")
    if board is not None and board["id"] in state.boards:
        state.boards[board["id"]]["dateLastActivity"] = action["date"]
    return state.record(action)


def models_of(action: Record) -> set[str]:
    """Ids of every model an action involves (what a webhook on that model sees)."""
    data = action["data"]
    found = {action["idMemberCreator"]}
    for key in ("card", "list", "board", "listBefore", "listAfter", "boardSource", "boardTarget", "label"):
        ref = data.get(key)
        if isinstance(ref, dict) and "id" in ref:
            found.add(ref["id"])
    if "idMember" in data:
        found.add(data["idMember"])
    return found


def _bound(call: Call, name: str) -> tuple[str, str] | None:
    """``since``/``before``: ``("seq", index-as-hex)`` for a known action id, else ``("date", iso)``."""
    value = call.text(name)
    if not value:
        return None
    if is_object_id(value):
        known = call.state.action_index(value)
        if known is not None:
            return ("seq", f"{known:012x}")
        return ("date", iso(id_time(value)))
    try:
        return ("date", iso(parse_date(value)))
    except ValueError:
        raise invalid_value(name) from None


def _matches(action: Record, filters: list[str]) -> bool:
    if not filters or "all" in filters:
        return True
    for item in filters:
        kind, _, field = item.partition(":")
        if action["type"] != kind:
            continue
        if not field or field in action["data"].get("old", {}):
            return True
    return False


def query(call: Call, model_key: str, model_id: str, default_filter: str) -> list[Record]:
    """Actions about a model, newest first, with ``filter``, ``since``, ``before``, ``limit``, ``page``."""
    filters = [f for f in (call.text("filter") or default_filter).split(",") if f]
    limit = call.number("limit", 50, high=MAX_LIMIT)
    page = call.number("page", 0, high=100)
    since = _bound(call, "since")
    before = _bound(call, "before")
    skip = page * limit
    out: list[Record] = []
    actions = call.state.actions
    for index in range(len(actions) - 1, -1, -1):
        action = actions[index]
        if not _involves(action, model_key, model_id) or not _matches(action, filters):
            continue
        if since is not None and _key(since[0], index, action) <= since[1]:
            continue
        if before is not None and _key(before[0], index, action) >= before[1]:
            continue
        if skip:
            skip -= 1
            continue
        out.append(action)
        if len(out) >= limit:
            break
    return out


def _key(kind: str, index: int, action: Record) -> str:
    return f"{index:012x}" if kind == "seq" else str(action["date"])


def _involves(action: Record, model_key: str, model_id: str) -> bool:
    data = action["data"]
    keys = ("board", "boardSource", "boardTarget") if model_key == "board" else (model_key,)
    return any(isinstance(data.get(k), dict) and data[k].get("id") == model_id for k in keys)
