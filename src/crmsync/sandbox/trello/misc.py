"""``/actions/{id}`` (comments can be edited and deleted there) and ``/search``."""

from __future__ import annotations

from typing import Any

from crmsync.sandbox.trello import access, views
from crmsync.sandbox.trello.cards import delete_comment, edit_comment
from crmsync.sandbox.trello.http import Call, Router, TrelloError, invalid_value, not_found

MODEL_TYPES = ("actions", "boards", "cards", "members", "organizations")


def get_action(call: Call) -> Any:
    action = call.state.action(call.args["action"])
    board = action["data"].get("board")
    if board is not None:
        access.require_board(call, board["id"])
    return action


def _comment(call: Call) -> dict[str, Any]:
    action = get_action(call)
    if action["type"] != "commentCard":
        raise TrelloError(400, "action is not a comment")
    if action["idMemberCreator"] != call.member:
        raise TrelloError(401, "unauthorized permission requested")
    return dict(action)


def put_action(call: Call) -> Any:
    text = call.text("text") or call.text("value")
    if not text:
        raise invalid_value("text")
    action = _comment(call)
    return edit_comment(call.state, call.member, call.state.action(action["id"]), text)


def delete_action(call: Call) -> Any:
    action = _comment(call)
    delete_comment(call.state, call.member, call.state.action(action["id"]))
    return {"_value": None}


def search(call: Call) -> Any:
    """A plain substring search of names (and card descriptions); not a full query language."""
    state = call.state
    text = call.text("query") or ""
    if not text.strip():
        raise invalid_value("query")
    terms = [t.lower() for t in text.split()]
    types = call.ids("modelTypes") or ["all"]
    if "all" in types:
        types = list(MODEL_TYPES)
    boards_param = call.ids("idBoards")
    visible = [b for b in state.boards.values() if state.is_board_member(b["id"], call.member)]
    if boards_param and boards_param != ["mine"]:
        visible = [b for b in visible if b["id"] in boards_param]
    board_ids = {b["id"] for b in visible}

    def hit(*fields: str) -> bool:
        blob = " ".join(fields).lower()
        return all(term in blob for term in terms)

    out: dict[str, Any] = {
        "options": {"terms": [{"text": t} for t in terms], "modelTypes": types, "partial": False}
    }
    if "cards" in types:
        limit = call.number("cards_limit", 10, low=1, high=1000)
        page = call.number("cards_page", 0, high=100)
        found = [c for c in state.cards.values() if c["idBoard"] in board_ids and hit(c["name"], c["desc"])]
        found.sort(key=lambda c: c["dateLastActivity"], reverse=True)
        chosen = found[page * limit : (page + 1) * limit]
        out["cards"] = [views.trim(views.card(state, c), call.text("card_fields")) for c in chosen]
    if "boards" in types:
        out["boards"] = [
            views.trim(views.board(state, b), call.text("board_fields")) for b in visible if hit(b["name"])
        ]
    if "members" in types:
        out["members"] = [
            views.member(state, m) for m in state.members.values() if hit(m["fullName"], m["username"])
        ]
    if "organizations" in types:
        out["organizations"] = []
    if "actions" in types:
        out["actions"] = []
    return out


def no_organization(call: Call) -> Any:
    raise not_found()


def register(router: Router) -> None:
    router.add("GET", "/actions/{action}", get_action)
    router.add("PUT", "/actions/{action}", put_action)
    router.add("PUT", "/actions/{action}/text", put_action)
    router.add("DELETE", "/actions/{action}", delete_action)
    router.add("GET", "/search", search)
    router.add("GET", "/organizations/{organization}", no_organization)
