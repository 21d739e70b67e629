"""Cards: create, read, update (moves, archive, due dates...), delete, members, labels, comments.

The ``*_card`` functions change the state and append the actions a person's change would; the
HTTP handlers below only parse parameters and call them, and so do the emulator's helpers for
tests (:meth:`TrelloEmulator.create_card` and friends).
"""

from __future__ import annotations

from typing import Any

from crmsync.sandbox.trello import access, views
from crmsync.sandbox.trello.actions import board_ref, card_context, card_ref, list_ref, query, record
from crmsync.sandbox.trello.http import Call, Router, TrelloError, invalid_value, not_found
from crmsync.sandbox.trello.ids import normalize_date, now_iso, object_id
from crmsync.sandbox.trello.store import Record, State, resolve_pos

#: fields a PUT may change, in the order their actions are appended
UPDATABLE = (
    "idBoard",
    "idList",
    "pos",
    "name",
    "desc",
    "closed",
    "due",
    "start",
    "dueComplete",
    "subscribed",
)


# -- state changes -----------------------------------------------------------------------------
def create_card(
    state: State,
    member_id: str,
    list_rec: Record,
    *,
    name: str = "",
    desc: str = "",
    pos: Any = None,
    due: str | None = None,
    start: str | None = None,
    due_complete: bool = False,
    id_members: list[str] | None = None,
    id_labels: list[str] | None = None,
    source: Record | None = None,
) -> Record:
    board = state.boards[list_rec["idBoard"]]
    ident = object_id()
    board["_idShort"] = board.get("_idShort", 0) + 1
    card: Record = {
        "id": ident,
        "name": name,
        "desc": desc,
        "closed": False,
        "idList": list_rec["id"],
        "idBoard": board["id"],
        "pos": resolve_pos(pos, list(state.list_cards(list_rec["id"]))),
        "due": due,
        "start": start,
        "dueComplete": due_complete,
        "idMembers": list(id_members or []),
        "idLabels": list(id_labels or []),
        "idShort": board["_idShort"],
        "shortLink": state.new_short_link(ident),
        "dateLastActivity": now_iso(),
        "subscribed": False,
        "_comments": 0,
    }
    state.cards[ident] = card
    if source is None:
        record(state, "createCard", member_id, card_context(state, card), "action_create_card")
    else:
        for cf_id, item in state.items.get(source["id"], {}).items():
            if state.custom_fields.get(cf_id, {}).get("idModel") == board["id"]:
                state.items.setdefault(ident, {})[cf_id] = dict(item, id=object_id(), idModel=ident)
        data = card_context(state, card)
        data["cardSource"] = card_ref(source)
        record(state, "copyCard", member_id, data, "action_copy_card")
    return card


def update_card(state: State, member_id: str, card: Record, changes: dict[str, Any]) -> Record:
    """Apply validated ``changes`` at once, then append one action per changed field."""
    changes = dict(changes)
    members = changes.pop("idMembers", None)
    labels = changes.pop("idLabels", None)
    old = {k: card[k] for k in changes if k in card and card[k] != changes[k]}
    old_list = state.lists[card["idList"]]
    old_board = state.boards[card["idBoard"]]
    for key in old:
        card[key] = changes[key]
    if old:
        card["dateLastActivity"] = now_iso()
    if "idBoard" in old:
        _move_board_actions(state, member_id, card, old_board, old_list)
    elif "idList" in old:
        data = {
            "card": card_ref(card, "idList"),
            "old": {"idList": old["idList"]},
            "board": board_ref(old_board),
            "listBefore": list_ref(old_list),
            "listAfter": list_ref(state.lists[card["idList"]]),
        }
        record(state, "updateCard", member_id, data, "action_move_card_from_list_to_list")
    if "pos" in old and "idList" not in old:
        key = "action_moved_card_higher" if card["pos"] < old["pos"] else "action_moved_card_lower"
        _field_action(state, member_id, card, "pos", old["pos"], key)
    for name in ("name", "desc", "closed", "due", "start", "dueComplete"):
        if name in old:
            _field_action(state, member_id, card, name, old[name], _translation(name, old[name], card[name]))
    if members is not None:
        for gone in [m for m in card["idMembers"] if m not in members]:
            remove_member(state, member_id, card, gone)
        for new in [m for m in members if m not in card["idMembers"]]:
            add_member(state, member_id, card, new)
    if labels is not None:
        for gone in [lab for lab in card["idLabels"] if lab not in labels]:
            remove_label(state, member_id, card, state.labels[gone])
        for new in [lab for lab in labels if lab not in card["idLabels"]]:
            add_label(state, member_id, card, state.labels[new])
    return card


def _translation(name: str, before: Any, after: Any) -> str:
    if name == "closed":
        return "action_archived_card" if after else "action_sent_card_to_board"
    if name == "dueComplete":
        return "action_marked_the_due_date_complete" if after else "action_marked_the_due_date_incomplete"
    if name in ("due", "start"):
        word = "due" if name == "due" else "start"
        if before is None:
            return f"action_added_a_{word}_date"
        return f"action_removed_a_{word}_date" if after is None else f"action_changed_a_{word}_date"
    if name == "name":
        return "action_renamed_card"
    return "action_changed_description_of_card"


def _field_action(state: State, member_id: str, card: Record, name: str, before: Any, key: str) -> None:
    data = card_context(state, card)
    data["card"] = card_ref(card, name) if name != "name" else card_ref(card)
    data["old"] = {name: before}
    record(state, "updateCard", member_id, data, key)


def _move_board_actions(
    state: State, member_id: str, card: Record, old_board: Record, old_list: Record
) -> None:
    new_board = state.boards[card["idBoard"]]
    record(
        state,
        "moveCardFromBoard",
        member_id,
        {
            "card": card_ref(card),
            "list": list_ref(old_list),
            "board": board_ref(old_board),
            "boardTarget": {"id": new_board["id"]},
        },
        "action_move_card_from_board",
    )
    board_fields = {f["id"] for f in state.board_fields(new_board["id"])}
    items = state.items.get(card["id"], {})
    for cf_id in [k for k in items if k not in board_fields]:
        del items[cf_id]
    data = card_context(state, card)
    data["boardSource"] = {"id": old_board["id"]}
    record(state, "moveCardToBoard", member_id, data, "action_move_card_to_board")


def delete_card(state: State, member_id: str, card: Record) -> None:
    data = {
        "card": {"id": card["id"], "idShort": card["idShort"]},
        "list": list_ref(state.lists[card["idList"]]),
        "board": board_ref(state.boards[card["idBoard"]]),
    }
    # recorded first, so that a webhook on the card still gets its last state as ``model``
    record(state, "deleteCard", member_id, data, "action_delete_card")
    del state.cards[card["id"]]
    state.items.pop(card["id"], None)
    state.short_links.pop(card["shortLink"], None)


def add_member(state: State, member_id: str, card: Record, who: str) -> None:
    card["idMembers"].append(who)
    card["dateLastActivity"] = now_iso()
    data = card_context(state, card)
    data["idMember"] = who
    data["member"] = {"id": who, "name": state.members[who]["fullName"]}
    key = "action_member_joined_card" if who == member_id else "action_add_member_to_card"
    record(state, "addMemberToCard", member_id, data, key, member=who)


def remove_member(state: State, member_id: str, card: Record, who: str) -> None:
    card["idMembers"].remove(who)
    card["dateLastActivity"] = now_iso()
    data = card_context(state, card)
    data["idMember"] = who
    data["member"] = {"id": who, "name": state.members[who]["fullName"]}
    key = "action_member_left_card" if who == member_id else "action_remove_member_from_card"
    record(state, "removeMemberFromCard", member_id, data, key, member=who)


def add_label(state: State, member_id: str, card: Record, label: Record) -> None:
    card["idLabels"].append(label["id"])
    card["dateLastActivity"] = now_iso()
    data = card_context(state, card)
    data["label"] = {"id": label["id"], "name": label["name"], "color": label["color"]}
    data["text"] = label["name"]
    record(state, "addLabelToCard", member_id, data, "action_add_label_to_card")


def remove_label(state: State, member_id: str, card: Record, label: Record) -> None:
    card["idLabels"].remove(label["id"])
    card["dateLastActivity"] = now_iso()
    data = card_context(state, card)
    data["label"] = {"id": label["id"], "name": label["name"], "color": label["color"]}
    data["text"] = label["name"]
    record(state, "removeLabelFromCard", member_id, data, "action_remove_label_from_card")


def comment(state: State, member_id: str, card: Record, text: str) -> Record:
    card["_comments"] = card.get("_comments", 0) + 1
    card["dateLastActivity"] = now_iso()
    data = {"text": text, **card_context(state, card)}
    return record(state, "commentCard", member_id, data, "action_comment_on_card")


def edit_comment(state: State, member_id: str, action: Record, text: str) -> Record:
    before = action["data"]["text"]
    action["data"]["text"] = text
    action["data"]["dateLastEdited"] = now_iso()
    card = state.cards.get(action["data"]["card"]["id"])
    data: dict[str, Any] = {"action": {"id": action["id"], "text": text}, "old": {"text": before}}
    data.update(card_context(state, card) if card else {"card": action["data"]["card"]})
    record(state, "updateComment", member_id, data, "action_edit_comment")
    return action


def delete_comment(state: State, member_id: str, action: Record) -> None:
    state.forget_action(action["id"])
    card = state.cards.get(action["data"]["card"]["id"])
    data: dict[str, Any] = {"action": {"id": action["id"]}}
    if card is not None:
        card["_comments"] = max(0, card.get("_comments", 0) - 1)
        data.update(card_context(state, card))
    record(state, "deleteComment", member_id, data, "action_delete_comment")


# -- parameters ----------------------------------------------------------------------------------
def _date(call: Call, name: str) -> str | None:
    value = call.params.get(name)
    if value is None or value in ("", "null"):
        return None
    try:
        return normalize_date(str(value))
    except ValueError:
        raise invalid_value(name) from None


def _members(call: Call, board_id: str, name: str = "idMembers") -> list[str]:
    found = call.ids(name)
    for who in found:
        if not call.state.is_board_member(board_id, who):
            raise invalid_value(name)
    return list(dict.fromkeys(found))


def _labels(call: Call, board_id: str, name: str = "idLabels") -> list[str]:
    found = call.ids(name)
    for lab in found:
        if call.state.labels.get(lab, {}).get("idBoard") != board_id:
            raise invalid_value(name)
    return list(dict.fromkeys(found))


def changes_from(call: Call, card: Record) -> dict[str, Any]:
    """The validated changes a ``PUT /cards/{id}`` asks for."""
    state = call.state
    changes: dict[str, Any] = {}
    board_id = card["idBoard"]
    if call.has("idBoard"):
        target = state.param_ref(state.boards, call.text("idBoard"), "idBoard")
        access.require_board(call, target["id"])
        board_id = target["id"]
        changes["idBoard"] = board_id
    if call.has("idList"):
        lst = state.param_ref(state.lists, call.text("idList"), "idList")
        if call.has("idBoard") and lst["idBoard"] != board_id:
            raise invalid_value("idList")
        access.require_board(call, lst["idBoard"])
        board_id = lst["idBoard"]
        changes["idList"] = lst["id"]
        changes["idBoard"] = board_id
    elif board_id != card["idBoard"]:
        open_lists = sorted(
            (x for x in state.board_lists(board_id) if not x["closed"]), key=lambda x: x["pos"]
        )
        if not open_lists:
            raise invalid_value("idBoard")
        changes["idList"] = open_lists[0]["id"]
    if call.has("pos"):
        target_list = str(changes.get("idList", card["idList"]))
        siblings = [c for c in state.list_cards(target_list) if c["id"] != card["id"]]
        changes["pos"] = resolve_pos(call.params["pos"], siblings)
    if call.has("name"):
        name = call.text("name") or ""
        if not name.strip():
            raise invalid_value("name")
        changes["name"] = name
    if call.has("desc"):
        changes["desc"] = call.text("desc") or ""
    for name in ("closed", "dueComplete", "subscribed"):
        if call.has(name):
            changes[name] = call.flag(name)
    for name in ("due", "start"):
        if call.has(name):
            changes[name] = _date(call, name)
    if call.has("idMembers"):
        changes["idMembers"] = _members(call, board_id)
    if call.has("idLabels"):
        changes["idLabels"] = _labels(call, board_id)
    return changes


def _render(call: Call, card: Record) -> dict[str, Any]:
    return views.card(call.state, card, custom_field_items=call.flag("customFieldItems"))


# -- HTTP --------------------------------------------------------------------------------------------
def post_card(call: Call) -> Any:
    state = call.state
    lst = state.param_ref(state.lists, call.text("idList"), "idList")
    access.require_board(call, lst["idBoard"])
    source = None
    if call.text("idCardSource"):
        source = state.param_ref(state.cards, call.text("idCardSource"), "idCardSource")
        access.require_board(call, source["idBoard"])
    keep = set((call.text("keepFromSource") or "all").split(","))

    def inherit(name: str, part: str) -> Any:
        if source is not None and not call.has(name) and (part in keep or "all" in keep):
            return source[name]
        return None

    due = _date(call, "due") if call.has("due") else inherit("due", "due")
    labels = _labels(call, lst["idBoard"]) if call.has("idLabels") else None
    if labels is None and source is not None and source["idBoard"] == lst["idBoard"]:
        labels = inherit("idLabels", "labels")
    members = _members(call, lst["idBoard"]) if call.has("idMembers") else inherit("idMembers", "members")
    name = call.text("name")
    card = create_card(
        state,
        call.member,
        lst,
        name=name if name is not None else (source["name"] if source else ""),
        desc=call.text("desc") or (source["desc"] if source else ""),
        pos=call.params.get("pos"),
        due=due,
        start=_date(call, "start"),
        due_complete=call.flag("dueComplete"),
        id_members=members,
        id_labels=labels,
        source=source,
    )
    return _render(call, card)


def get_card(call: Call) -> Any:
    card = access.card(call, call.args["card"])
    state = call.state
    body = views.trim(_render(call, card), call.text("fields"))
    if call.flag("customFieldItems"):
        body["customFieldItems"] = views.card_items(state, card["id"])
    if call.flag("members"):
        body["members"] = [views.member(state, state.members[m]) for m in card["idMembers"]]
    if call.flag("list"):
        body["list"] = views.trello_list(state.lists[card["idList"]])
    if call.flag("board"):
        body["board"] = views.board(state, state.boards[card["idBoard"]])
    if call.text("actions"):
        sub = Call(
            call.method, call.path, state, {"filter": call.text("actions")}, call.member, call.token, call.key
        )
        body["actions"] = query(sub, "card", card["id"], "")
    return body


def put_card(call: Call) -> Any:
    card = access.card(call, call.args["card"])
    update_card(call.state, call.member, card, changes_from(call, card))
    return _render(call, card)


def put_card_field(call: Call) -> Any:
    field = call.args["field"]
    if field not in UPDATABLE and field not in ("idMembers", "idLabels"):
        raise TrelloError(404, f"Cannot PUT /1{call.path}")
    params = dict(call.params)
    params[field] = params.pop("value", None)
    sub = Call(call.method, call.path, call.state, params, call.member, call.token, call.key, call.args)
    return put_card(sub)


def delete_card_route(call: Call) -> Any:
    card = access.card(call, call.args["card"])
    delete_card(call.state, call.member, card)
    return {"limits": {}}


def get_card_field(call: Call) -> Any:
    card = access.card(call, call.args["card"])
    body = _render(call, card)
    field = call.args["field"]
    if field not in body:
        raise TrelloError(404, f"Cannot GET /1{call.path}")
    return {"_value": body[field]}


def card_actions(call: Call) -> Any:
    card = access.card(call, call.args["card"])
    return query(call, "card", card["id"], "commentCard,updateCard:idList")


def card_members(call: Call) -> Any:
    card = access.card(call, call.args["card"])
    return [views.member(call.state, call.state.members[m]) for m in card["idMembers"]]


def card_list(call: Call) -> Any:
    card = access.card(call, call.args["card"])
    return views.trim(views.trello_list(call.state.lists[card["idList"]]), call.text("fields"))


def card_board(call: Call) -> Any:
    card = access.card(call, call.args["card"])
    return views.trim(views.board(call.state, call.state.boards[card["idBoard"]]), call.text("fields"))


def card_labels(call: Call) -> Any:
    card = access.card(call, call.args["card"])
    return [views.label(call.state.labels[i]) for i in card["idLabels"]]


def empty_list(call: Call) -> Any:
    access.card(call, call.args["card"])
    return []


def post_member(call: Call) -> Any:
    card = access.card(call, call.args["card"])
    who = call.text("value") or ""
    if who not in call.state.members or not call.state.is_board_member(card["idBoard"], who):
        raise invalid_value("value")
    if who in card["idMembers"]:
        raise TrelloError(400, "member is already on the card")
    add_member(call.state, call.member, card, who)
    return [views.member(call.state, call.state.members[m]) for m in card["idMembers"]]


def delete_member(call: Call) -> Any:
    card = access.card(call, call.args["card"])
    who = call.args["member"]
    if who not in card["idMembers"]:
        raise TrelloError(400, "member is not on the card")
    remove_member(call.state, call.member, card, who)
    return [views.member(call.state, call.state.members[m]) for m in card["idMembers"]]


def post_label(call: Call) -> Any:
    card = access.card(call, call.args["card"])
    label = call.state.labels.get(call.text("value") or "")
    if label is None or label["idBoard"] != card["idBoard"]:
        raise invalid_value("value")
    if label["id"] in card["idLabels"]:
        raise TrelloError(400, "that label is already on the card")
    add_label(call.state, call.member, card, label)
    return list(card["idLabels"])


def delete_label(call: Call) -> Any:
    card = access.card(call, call.args["card"])
    label = call.state.label(call.args["label"])
    if label["id"] not in card["idLabels"]:
        raise TrelloError(400, "that label is not on the card")
    remove_label(call.state, call.member, card, label)
    return list(card["idLabels"])


def post_new_label(call: Call) -> Any:
    from crmsync.sandbox.trello.labels import create_label, label_color

    card = access.card(call, call.args["card"])
    label = create_label(call.state, card["idBoard"], call.text("name") or "", label_color(call))
    add_label(call.state, call.member, card, label)
    return views.label(label)


def post_comment(call: Call) -> Any:
    card = access.card(call, call.args["card"])
    text = call.text("text")
    if not text:
        raise invalid_value("text")
    return comment(call.state, call.member, card, text)


def _own_comment(call: Call, ident: str) -> Record:
    action = call.state.action(ident)
    if action["type"] != "commentCard":
        raise not_found()
    if action["idMemberCreator"] != call.member:
        raise TrelloError(401, "unauthorized permission requested")
    return action


def put_comment(call: Call) -> Any:
    access.card(call, call.args["card"])
    text = call.text("text") or call.text("value")
    if not text:
        raise invalid_value("text")
    return edit_comment(call.state, call.member, _own_comment(call, call.args["action"]), text)


def delete_comment_route(call: Call) -> Any:
    access.card(call, call.args["card"])
    delete_comment(call.state, call.member, _own_comment(call, call.args["action"]))
    return {"limits": {}}


def register(router: Router) -> None:
    add = router.add
    add("POST", "/cards", post_card)
    add("GET", "/cards/{card}", get_card)
    add("PUT", "/cards/{card}", put_card)
    add("DELETE", "/cards/{card}", delete_card_route)
    add("GET", "/cards/{card}/actions", card_actions)
    add("POST", "/cards/{card}/actions/comments", post_comment)
    add("PUT", "/cards/{card}/actions/{action}/comments", put_comment)
    add("DELETE", "/cards/{card}/actions/{action}/comments", delete_comment_route)
    add("GET", "/cards/{card}/members", card_members)
    add("GET", "/cards/{card}/list", card_list)
    add("GET", "/cards/{card}/board", card_board)
    add("GET", "/cards/{card}/labels", card_labels)
    add("POST", "/cards/{card}/labels", post_new_label)
    for name in ("checklists", "attachments", "pluginData", "stickers"):
        add("GET", f"/cards/{{card}}/{name}", empty_list)
    add("POST", "/cards/{card}/idMembers", post_member)
    add("POST", "/cards/{card}/members", post_member)
    add("DELETE", "/cards/{card}/idMembers/{member}", delete_member)
    add("DELETE", "/cards/{card}/members/{member}", delete_member)
    add("POST", "/cards/{card}/idLabels", post_label)
    add("DELETE", "/cards/{card}/idLabels/{label}", delete_label)


def register_fallbacks(router: Router) -> None:
    """``GET|PUT /cards/{id}/{field}``: registered after every named sub-route."""
    router.add("GET", "/cards/{card}/{field}", get_card_field)
    router.add("PUT", "/cards/{card}/{field}", put_card_field)
