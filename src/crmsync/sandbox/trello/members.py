"""Members: ``/members/{id|username|me}`` and what the token's member sees (its boards, cards)."""

from __future__ import annotations

from typing import Any

from crmsync.sandbox.trello import views
from crmsync.sandbox.trello.http import Call, Router, TrelloError, invalid_value
from crmsync.sandbox.trello.ids import object_id
from crmsync.sandbox.trello.store import Record, State

BOARD_FILTERS = ("all", "closed", "members", "open", "organization", "public", "starred")


def create_member(state: State, username: str, full_name: str, *, email: str | None = None) -> Record:
    ident = object_id()
    initials = "".join(part[0] for part in full_name.split()[:3]).upper() or username[:2].upper()
    rec: Record = {
        "id": ident,
        "username": username,
        "fullName": full_name,
        "initials": initials,
        "email": email,
    }
    state.members[ident] = rec
    return rec


def _member(call: Call) -> Record:
    return call.state.member(call.args["member"], call.member)


def get_member(call: Call) -> Any:
    rec = _member(call)
    return views.trim(views.member(call.state, rec, full=rec["id"] == call.member), call.text("fields"))


def member_boards(call: Call) -> Any:
    rec = _member(call)
    board_filter = call.args.get("filter") or call.text("filter") or "all"
    if board_filter not in BOARD_FILTERS:
        raise invalid_value("filter")
    out = []
    for board in call.state.boards.values():
        if not call.state.is_board_member(board["id"], rec["id"]):
            continue
        if not call.state.is_board_member(board["id"], call.member):
            continue
        if (board_filter == "open" and board["closed"]) or (board_filter == "closed" and not board["closed"]):
            continue
        if board_filter in ("starred", "organization", "public"):
            continue
        body = views.trim(views.board(call.state, board), call.text("fields"))
        if call.text("lists") in ("all", "open"):
            body["lists"] = [
                views.trello_list(x)
                for x in sorted(call.state.board_lists(board["id"]), key=lambda x: x["pos"])
                if call.text("lists") == "all" or not x["closed"]
            ]
        out.append(body)
    return out


def member_cards(call: Call) -> Any:
    rec = _member(call)
    cards = [
        c
        for c in call.state.cards.values()
        if rec["id"] in c["idMembers"] and call.state.is_board_member(c["idBoard"], call.member)
    ]
    if (call.text("filter") or "visible") in ("visible", "open"):
        cards = [c for c in cards if not c["closed"]]
    return views.cards_for(call, cards)


def nothing(call: Call) -> Any:
    _member(call)
    return []


def member_field(call: Call) -> Any:
    body = views.member(call.state, _member(call), full=True)
    if call.args["field"] not in body:
        raise TrelloError(404, f"Cannot GET /1{call.path}")
    return {"_value": body[call.args["field"]]}


def register(router: Router) -> None:
    add = router.add
    add("GET", "/members/{member}", get_member)
    add("GET", "/members/{member}/boards", member_boards)
    add("GET", "/members/{member}/boards/{filter}", member_boards)
    add("GET", "/members/{member}/cards", member_cards)
    for name in ("organizations", "boardStars", "notifications", "actions"):
        add("GET", f"/members/{{member}}/{name}", nothing)
    add("GET", "/members/{member}/{field}", member_field)
