"""Lists: create, read, rename, archive, move, and the list's cards."""

from __future__ import annotations

from typing import Any

from crmsync.sandbox.trello import access, views
from crmsync.sandbox.trello.actions import board_ref, list_ref, query, record
from crmsync.sandbox.trello.cards import update_card
from crmsync.sandbox.trello.http import Call, Router, TrelloError, invalid_value
from crmsync.sandbox.trello.ids import object_id
from crmsync.sandbox.trello.store import Record, State, resolve_pos

CARD_FILTERS = ("all", "closed", "none", "open", "visible")


def create_list(state: State, member_id: str, board: Record, name: str, pos: Any = None) -> Record:
    ident = object_id()
    rec: Record = {
        "id": ident,
        "name": name,
        "closed": False,
        "idBoard": board["id"],
        "pos": resolve_pos(pos, list(state.board_lists(board["id"]))),
        "subscribed": False,
    }
    state.lists[ident] = rec
    record(
        state,
        "createList",
        member_id,
        {"list": list_ref(rec), "board": board_ref(board)},
        "action_added_list_to_board",
    )
    return rec


def update_list(state: State, member_id: str, rec: Record, changes: dict[str, Any]) -> Record:
    old = {k: rec[k] for k, v in changes.items() if rec.get(k) != v}
    old_board = state.boards[rec["idBoard"]]
    rec.update(changes)
    for name, before in old.items():
        if name == "subscribed":
            continue
        if name == "idBoard":
            data = {"list": list_ref(rec), "board": board_ref(state.boards[rec["idBoard"]])}
            data["boardSource"] = {"id": before}
            record(state, "moveListToBoard", member_id, data, "action_move_list_to_board")
            for card in state.list_cards(rec["id"]):
                card["idBoard"] = rec["idBoard"]
            continue
        key = {
            "name": "action_renamed_list",
            "closed": "action_archived_list" if rec["closed"] else "action_sent_list_to_board",
            "pos": "action_moved_list_right" if rec["pos"] > before else "action_moved_list_left",
        }[name]
        data = {
            "list": dict(list_ref(rec), **{name: rec[name]}),
            "board": board_ref(old_board),
            "old": {name: before},
        }
        record(state, "updateList", member_id, data, key)
    return rec


def cards_of(call: Call, lst: Record, card_filter: str) -> list[Record]:
    if card_filter not in CARD_FILTERS:
        raise invalid_value("filter")
    cards = list(call.state.list_cards(lst["id"]))
    if card_filter == "none":
        return []
    if card_filter in ("open", "visible"):
        return [c for c in cards if not c["closed"]]
    if card_filter == "closed":
        return [c for c in cards if c["closed"]]
    return cards


def _changes(call: Call, rec: Record) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if call.has("name"):
        changes["name"] = call.require("name")
    if call.has("closed"):
        changes["closed"] = call.flag("closed")
    if call.has("subscribed"):
        changes["subscribed"] = call.flag("subscribed")
    if call.has("idBoard"):
        board = call.state.param_ref(call.state.boards, call.text("idBoard"), "idBoard")
        access.require_board(call, board["id"])
        changes["idBoard"] = board["id"]
    if call.has("pos"):
        board_id = str(changes.get("idBoard", rec["idBoard"]))
        others = [x for x in call.state.board_lists(board_id) if x["id"] != rec["id"]]
        changes["pos"] = resolve_pos(call.params["pos"], others)
    return changes


# -- HTTP --------------------------------------------------------------------------------------------
def post_list(call: Call) -> Any:
    board = call.state.param_ref(call.state.boards, call.text("idBoard"), "idBoard")
    access.require_board(call, board["id"])
    return views.trello_list(
        create_list(call.state, call.member, board, call.require("name"), call.params.get("pos"))
    )


def get_list(call: Call) -> Any:
    lst = access.trello_list(call, call.args["list"])
    body = views.trim(views.trello_list(lst), call.text("fields"))
    if call.text("cards"):
        body["cards"] = views.cards_for(call, cards_of(call, lst, call.text("cards") or "open"))
    return body


def put_list(call: Call) -> Any:
    lst = access.trello_list(call, call.args["list"])
    return views.trello_list(update_list(call.state, call.member, lst, _changes(call, lst)))


def put_list_field(call: Call) -> Any:
    field = call.args["field"]
    if field not in ("name", "closed", "pos", "idBoard", "subscribed"):
        raise TrelloError(404, f"Cannot PUT /1{call.path}")
    params = dict(call.params)
    params[field] = params.pop("value", None)
    return put_list(
        Call(call.method, call.path, call.state, params, call.member, call.token, call.key, call.args)
    )


def list_cards(call: Call) -> Any:
    lst = access.trello_list(call, call.args["list"])
    card_filter = call.args.get("filter") or call.text("filter") or "open"
    return views.cards_for(call, cards_of(call, lst, card_filter))


def list_board(call: Call) -> Any:
    lst = access.trello_list(call, call.args["list"])
    return views.trim(views.board(call.state, call.state.boards[lst["idBoard"]]), call.text("fields"))


def list_actions(call: Call) -> Any:
    lst = access.trello_list(call, call.args["list"])
    return query(call, "list", lst["id"], "all")


def archive_all(call: Call) -> Any:
    lst = access.trello_list(call, call.args["list"])
    for card in list(call.state.list_cards(lst["id"])):
        if not card["closed"]:
            update_card(call.state, call.member, card, {"closed": True})
    return {}


def move_all(call: Call) -> Any:
    lst = access.trello_list(call, call.args["list"])
    board = call.state.param_ref(call.state.boards, call.text("idBoard"), "idBoard")
    access.require_board(call, board["id"])
    target = call.state.param_ref(call.state.lists, call.text("idList"), "idList")
    if target["idBoard"] != board["id"]:
        raise invalid_value("idList")
    moved = []
    for card in list(call.state.list_cards(lst["id"])):
        update_card(call.state, call.member, card, {"idBoard": board["id"], "idList": target["id"]})
        moved.append(card)
    return views.cards_for(call, moved)


def register(router: Router) -> None:
    add = router.add
    add("POST", "/lists", post_list)
    add("GET", "/lists/{list}", get_list)
    add("PUT", "/lists/{list}", put_list)
    add("GET", "/lists/{list}/cards", list_cards)
    add("GET", "/lists/{list}/cards/{filter}", list_cards)
    add("GET", "/lists/{list}/board", list_board)
    add("GET", "/lists/{list}/actions", list_actions)
    add("POST", "/lists/{list}/archiveAllCards", archive_all)
    add("POST", "/lists/{list}/moveAllCards", move_all)
    add("PUT", "/lists/{list}/{field}", put_list_field)
