"""Boards: create, read (with ``lists=``, ``cards=``, ``labels=``, ``members=``, ``customFields=``,
``card_customFieldItems=``, ``actions=`` expansions), update, delete, and their collections."""

from __future__ import annotations

from typing import Any

from crmsync.sandbox.trello import access, views
from crmsync.sandbox.trello.actions import board_ref, query, record
from crmsync.sandbox.trello.http import Call, Router, TrelloError, invalid_value, not_found
from crmsync.sandbox.trello.ids import now_iso, object_id
from crmsync.sandbox.trello.labels import create_label
from crmsync.sandbox.trello.lists import cards_of, create_list
from crmsync.sandbox.trello.store import Record, State, sort_by_pos

DEFAULT_LISTS = ("To Do", "Doing", "Done")
DEFAULT_LABEL_COLORS = ("green", "yellow", "orange", "red", "purple", "blue")
LIST_FILTERS = ("all", "closed", "none", "open")


def create_board(
    state: State,
    member_id: str,
    name: str,
    *,
    desc: str = "",
    default_lists: bool = True,
    default_labels: bool = True,
) -> Record:
    ident = object_id()
    board: Record = {
        "id": ident,
        "name": name,
        "desc": desc,
        "closed": False,
        "idOrganization": None,
        "shortLink": state.new_short_link(ident),
        "dateLastActivity": now_iso(),
        "idMemberCreator": member_id,
        "subscribed": False,
        "memberships": [{"id": object_id(), "idMember": member_id, "memberType": "admin"}],
        "_idShort": 0,
    }
    state.boards[ident] = board
    record(state, "createBoard", member_id, {"board": board_ref(board)}, "action_create_board")
    if default_labels:
        for color in DEFAULT_LABEL_COLORS:
            create_label(state, ident, "", color)
    if default_lists:
        for list_name in DEFAULT_LISTS:
            create_list(state, member_id, board, list_name)
    return board


def add_board_member(state: State, board: Record, member_id: str, member_type: str = "normal") -> None:
    for membership in board["memberships"]:
        if membership["idMember"] == member_id:
            membership["memberType"] = member_type
            return
    board["memberships"].append({"id": object_id(), "idMember": member_id, "memberType": member_type})


def _lists(state: State, board_id: str, list_filter: str) -> list[Record]:
    if list_filter not in LIST_FILTERS:
        raise invalid_value("filter")
    found = sort_by_pos(list(state.board_lists(board_id)))
    if list_filter == "none":
        return []
    if list_filter == "open":
        return [x for x in found if not x["closed"]]
    if list_filter == "closed":
        return [x for x in found if x["closed"]]
    return found


def _cards(state: State, board_id: str, card_filter: str) -> list[Record]:
    cards = list(state.board_cards(board_id))
    if card_filter in ("open", "visible"):
        return [c for c in cards if not c["closed"]]
    if card_filter == "closed":
        return [c for c in cards if c["closed"]]
    if card_filter == "none":
        return []
    if card_filter == "all":
        return cards
    raise invalid_value("filter")


def _members(state: State, board: Record, member_filter: str = "all") -> list[dict[str, Any]]:
    wanted = {"admins": ("admin",), "owners": ("admin",), "normal": ("normal",)}.get(member_filter)
    out = []
    for membership in board["memberships"]:
        if wanted is None or membership["memberType"] in wanted:
            out.append(views.member(state, state.members[membership["idMember"]]))
    return out


# -- HTTP --------------------------------------------------------------------------------------------
def get_board(call: Call) -> Any:
    state = call.state
    board = access.board(call, call.args["board"])
    body = views.trim(views.board(state, board), call.text("fields"))
    lists = call.text("lists")
    if lists:
        body["lists"] = [views.trello_list(x) for x in _lists(state, board["id"], lists)]
    cards = call.text("cards")
    if cards and cards != "none":
        with_items = call.flag("card_customFieldItems")
        body["cards"] = [
            views.card(state, c, custom_field_items=with_items)
            for c in sort_by_pos(_cards(state, board["id"], cards))
        ]
    if call.text("labels") in ("all", "true"):
        body["labels"] = [views.label(x, state) for x in state.board_labels(board["id"])]
    if call.text("members") in ("all", "normal", "admins", "owners"):
        body["members"] = _members(state, board, call.text("members") or "all")
    if call.flag("customFields"):
        body["customFields"] = [views.custom_field(f) for f in state.board_fields(board["id"])]
    if call.text("actions"):
        sub = Call(
            call.method, call.path, state, {"filter": call.text("actions")}, call.member, call.token, call.key
        )
        body["actions"] = query(sub, "board", board["id"], "all")
    return body


def post_board(call: Call) -> Any:
    board = create_board(
        call.state,
        call.member,
        call.require("name"),
        desc=call.text("desc") or "",
        default_lists=call.flag("defaultLists", True),
        default_labels=call.flag("defaultLabels", True),
    )
    return views.board(call.state, board)


def put_board(call: Call) -> Any:
    board = access.board(call, call.args["board"])
    old: dict[str, Any] = {}
    for name in ("name", "desc"):
        if call.has(name):
            value = call.require(name) if name == "name" else (call.text(name) or "")
            if value != board[name]:
                old[name] = board[name]
                board[name] = value
    for name in ("closed", "subscribed"):
        if call.has(name):
            flag = call.flag(name)
            if flag != board[name]:
                old[name] = board[name]
                board[name] = flag
    old.pop("subscribed", None)
    if old:
        data = {"board": dict(board_ref(board), **{k: board[k] for k in old}), "old": old}
        record(call.state, "updateBoard", call.member, data, "action_update_board")
    return views.board(call.state, board)


def put_board_field(call: Call) -> Any:
    field = call.args["field"]
    if field not in ("name", "desc", "closed", "subscribed"):
        raise TrelloError(404, f"Cannot PUT /1{call.path}")
    params = dict(call.params)
    params[field] = params.pop("value", None)
    return put_board(
        Call(call.method, call.path, call.state, params, call.member, call.token, call.key, call.args)
    )


def delete_board(call: Call) -> Any:
    state = call.state
    board = access.board(call, call.args["board"])
    for card in list(state.board_cards(board["id"])):
        del state.cards[card["id"]]
        state.items.pop(card["id"], None)
        state.short_links.pop(card["shortLink"], None)
    for table in (state.lists, state.labels):
        for ident in [k for k, v in table.items() if v["idBoard"] == board["id"]]:
            del table[ident]
    for ident in [k for k, v in state.custom_fields.items() if v["idModel"] == board["id"]]:
        del state.custom_fields[ident]
    del state.boards[board["id"]]
    state.short_links.pop(board["shortLink"], None)
    return {"_value": None}


def board_lists(call: Call) -> Any:
    board = access.board(call, call.args["board"])
    list_filter = call.args.get("filter") or call.text("filter") or "open"
    out = []
    for lst in _lists(call.state, board["id"], list_filter):
        body = views.trim(views.trello_list(lst), call.text("fields"))
        cards = call.text("cards")
        if cards and cards != "none":
            body["cards"] = views.cards_for(call, cards_of(call, lst, cards))
        out.append(body)
    return out


def board_cards(call: Call) -> Any:
    board = access.board(call, call.args["board"])
    card_filter = call.args.get("filter") or call.text("filter") or "visible"
    if "filter" in call.args and card_filter not in ("all", "closed", "none", "open", "visible"):
        return board_card(
            Call(
                call.method,
                call.path,
                call.state,
                call.params,
                call.member,
                call.token,
                call.key,
                {"board": board["id"], "card": card_filter},
            )
        )
    return views.cards_for(call, _cards(call.state, board["id"], card_filter))


def board_card(call: Call) -> Any:
    board = access.board(call, call.args["board"])
    card = call.state.card(call.args["card"])
    if card["idBoard"] != board["id"]:
        raise not_found()
    return views.card(call.state, card, custom_field_items=call.flag("customFieldItems"))


def board_members(call: Call) -> Any:
    board = access.board(call, call.args["board"])
    found = _members(call.state, board, call.text("filter") or "all")
    return [views.trim(m, call.text("fields")) for m in found]


def board_memberships(call: Call) -> Any:
    board = access.board(call, call.args["board"])
    return [dict(m, unconfirmed=False, deactivated=False) for m in board["memberships"]]


def put_board_member(call: Call) -> Any:
    board = access.board(call, call.args["board"])
    who = call.state.member(call.args["member"], call.member)
    member_type = call.text("type") or "normal"
    if member_type not in ("admin", "normal", "observer"):
        raise invalid_value("type")
    add_board_member(call.state, board, who["id"], member_type)
    return {"id": board["id"], "members": _members(call.state, board), "memberships": board_memberships(call)}


def delete_board_member(call: Call) -> Any:
    board = access.board(call, call.args["board"])
    who = call.state.member(call.args["member"], call.member)
    board["memberships"] = [m for m in board["memberships"] if m["idMember"] != who["id"]]
    return {"id": board["id"], "members": _members(call.state, board)}


def board_actions(call: Call) -> Any:
    board = access.board(call, call.args["board"])
    return query(call, "board", board["id"], "all")


def board_checklists(call: Call) -> Any:
    access.board(call, call.args["board"])
    return []


def get_board_field(call: Call) -> Any:
    board = access.board(call, call.args["board"])
    body = views.board(call.state, board)
    if call.args["field"] not in body:
        raise TrelloError(404, f"Cannot GET /1{call.path}")
    return {"_value": body[call.args["field"]]}


def register(router: Router) -> None:
    add = router.add
    add("POST", "/boards", post_board)
    add("GET", "/boards/{board}", get_board)
    add("PUT", "/boards/{board}", put_board)
    add("DELETE", "/boards/{board}", delete_board)
    add("GET", "/boards/{board}/lists", board_lists)
    add("GET", "/boards/{board}/lists/{filter}", board_lists)
    add("GET", "/boards/{board}/cards", board_cards)
    add("GET", "/boards/{board}/cards/{filter}", board_cards)
    add("GET", "/boards/{board}/members", board_members)
    add("GET", "/boards/{board}/memberships", board_memberships)
    add("PUT", "/boards/{board}/members/{member}", put_board_member)
    add("DELETE", "/boards/{board}/members/{member}", delete_board_member)
    add("GET", "/boards/{board}/actions", board_actions)
    add("GET", "/boards/{board}/checklists", board_checklists)


def register_fallbacks(router: Router) -> None:
    router.add("GET", "/boards/{board}/{field}", get_board_field)
    router.add("PUT", "/boards/{board}/{field}", put_board_field)
