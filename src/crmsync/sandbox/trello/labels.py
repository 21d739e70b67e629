"""Labels: ``POST /labels``, ``GET|PUT|DELETE /labels/{id}``, ``GET /boards/{id}/labels``."""

from __future__ import annotations

from typing import Any

from crmsync.sandbox.trello import access, views
from crmsync.sandbox.trello.cards import remove_label
from crmsync.sandbox.trello.http import Call, Router, TrelloError, invalid_value, not_found
from crmsync.sandbox.trello.ids import object_id
from crmsync.sandbox.trello.store import Record, State

COLORS = frozenset(
    [*views.LABEL_COLORS]
    + [f"{c}_dark" for c in views.LABEL_COLORS]
    + [f"{c}_light" for c in views.LABEL_COLORS]
)


def create_label(state: State, board_id: str, name: str, color: str | None) -> Record:
    ident = object_id()
    label: Record = {"id": ident, "idBoard": board_id, "name": name, "color": color}
    state.labels[ident] = label
    return label


def label_color(call: Call, name: str = "color") -> str | None:
    value = call.text(name)
    if value in (None, "", "null", "none"):
        return None
    if value not in COLORS:
        raise invalid_value(name)
    return value


def post_label(call: Call) -> Any:
    board = call.state.param_ref(call.state.boards, call.text("idBoard"), "idBoard")
    access.require_board(call, board["id"])
    return views.label(create_label(call.state, board["id"], call.text("name") or "", label_color(call)))


def post_board_label(call: Call) -> Any:
    board = access.board(call, call.args["board"])
    return views.label(create_label(call.state, board["id"], call.text("name") or "", label_color(call)))


def get_label(call: Call) -> Any:
    return views.trim(views.label(access.label(call, call.args["label"])), call.text("fields"))


def put_label(call: Call) -> Any:
    label = access.label(call, call.args["label"])
    if call.has("name"):
        label["name"] = call.text("name") or ""
    if call.has("color"):
        label["color"] = label_color(call)
    return views.label(label)


def put_label_field(call: Call) -> Any:
    label = access.label(call, call.args["label"])
    field = call.args["field"]
    if field == "name":
        label["name"] = call.text("value") or ""
    elif field == "color":
        label["color"] = label_color(call, "value")
    else:
        raise TrelloError(404, f"Cannot PUT /1{call.path}")
    return views.label(label)


def delete_label(call: Call) -> Any:
    label = access.label(call, call.args["label"])
    for card in list(call.state.cards.values()):
        if label["id"] in card["idLabels"]:
            remove_label(call.state, call.member, card, label)
    del call.state.labels[label["id"]]
    return {}


def board_labels(call: Call) -> Any:
    board = access.board(call, call.args["board"])
    limit = call.number("limit", 50, high=1000)
    found = [views.label(lab, call.state) for lab in call.state.board_labels(board["id"])]
    return [views.trim(lab, call.text("fields")) for lab in found[:limit]]


def board_label(call: Call) -> Any:
    board = access.board(call, call.args["board"])
    label = call.state.label(call.args["label"])
    if label["idBoard"] != board["id"]:
        raise not_found()
    return views.label(label, call.state)


def register(router: Router) -> None:
    add = router.add
    add("POST", "/labels", post_label)
    add("GET", "/labels/{label}", get_label)
    add("PUT", "/labels/{label}", put_label)
    add("PUT", "/labels/{label}/{field}", put_label_field)
    add("DELETE", "/labels/{label}", delete_label)
    add("GET", "/boards/{board}/labels", board_labels)
    add("POST", "/boards/{board}/labels", post_board_label)
    add("GET", "/boards/{board}/labels/{label}", board_label)
