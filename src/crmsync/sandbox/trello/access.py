"""What a token may see: the boards its member belongs to (401 otherwise, as Trello answers)."""

from __future__ import annotations

from crmsync.sandbox.trello.http import Call, TrelloError
from crmsync.sandbox.trello.store import Record


def require_board(call: Call, board_id: str) -> None:
    if not call.state.is_board_member(board_id, call.member):
        raise TrelloError(401, "unauthorized permission requested")


def board(call: Call, ident: str) -> Record:
    rec = call.state.board(ident)
    require_board(call, rec["id"])
    return rec


def card(call: Call, ident: str) -> Record:
    rec = call.state.card(ident)
    if not call.state.is_board_member(rec["idBoard"], call.member):
        raise TrelloError(401, "unauthorized card permission requested")
    return rec


def trello_list(call: Call, ident: str) -> Record:
    rec = call.state.get_list(ident)
    require_board(call, rec["idBoard"])
    return rec


def label(call: Call, ident: str) -> Record:
    rec = call.state.label(ident)
    require_board(call, rec["idBoard"])
    return rec


def custom_field(call: Call, ident: str) -> Record:
    rec = call.state.custom_field(ident)
    require_board(call, rec["idModel"])
    return rec
