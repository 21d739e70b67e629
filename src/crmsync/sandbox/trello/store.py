"""The emulator's state: plain JSON-able records keyed by id, and how ids are looked up.

Records hold the fields Trello stores (a card's ``idList``, ``pos``, ``idLabels``...); what the
API returns is rendered from them by :mod:`crmsync.sandbox.trello.views`. Keys that start with
``_`` are internal (a webhook's owning token, a board's card counter) and never rendered.
Every mutation appends an action through :meth:`State.record`, which tells the listeners (the
webhook notifier).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from crmsync.sandbox.trello.http import TrelloError, invalid_id, invalid_value, not_found
from crmsync.sandbox.trello.ids import is_object_id, is_short_link, short_link

Record = dict[str, Any]
ActionListener = Callable[[Record], None]

#: position step between generated ``pos`` values
POS_STEP = 65536.0

COLLECTIONS = (
    "members",
    "tokens",
    "boards",
    "lists",
    "cards",
    "labels",
    "custom_fields",
    "items",
    "actions",
    "webhooks",
)


@dataclass
class State:
    members: dict[str, Record] = field(default_factory=dict)
    #: token -> {"idMember", "key", "dateCreated"}
    tokens: dict[str, Record] = field(default_factory=dict)
    boards: dict[str, Record] = field(default_factory=dict)
    lists: dict[str, Record] = field(default_factory=dict)
    cards: dict[str, Record] = field(default_factory=dict)
    labels: dict[str, Record] = field(default_factory=dict)
    custom_fields: dict[str, Record] = field(default_factory=dict)
    #: card id -> custom field id -> item (only set fields have an item)
    items: dict[str, dict[str, Record]] = field(default_factory=dict)
    #: all actions, oldest first
    actions: list[Record] = field(default_factory=list)
    webhooks: dict[str, Record] = field(default_factory=dict)
    short_links: dict[str, str] = field(default_factory=dict)
    listeners: list[ActionListener] = field(default_factory=list)
    _actions_by_id: dict[str, Record] = field(default_factory=dict)

    # -- persistence ---------------------------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        return copy.deepcopy({name: getattr(self, name) for name in COLLECTIONS})

    def load(self, data: dict[str, Any]) -> None:
        for name in COLLECTIONS:
            setattr(self, name, copy.deepcopy(data.get(name, [] if name == "actions" else {})))
        self._actions_by_id = {a["id"]: a for a in self.actions}
        self.short_links = {}
        for record in [*self.boards.values(), *self.cards.values()]:
            self.short_links[record["shortLink"]] = record["id"]

    # -- actions -------------------------------------------------------------------------------
    def record(self, action: Record) -> Record:
        self.actions.append(action)
        self._actions_by_id[action["id"]] = action
        for listener in list(self.listeners):
            listener(action)
        return action

    def action(self, ident: str) -> Record:
        return self._find(self._actions_by_id, ident)

    def action_index(self, ident: str) -> int | None:
        action = self._actions_by_id.get(ident)
        return None if action is None else self.actions.index(action)

    def forget_action(self, ident: str) -> None:
        action = self._actions_by_id.pop(ident, None)
        if action is not None:
            self.actions.remove(action)

    # -- lookups: 400 "invalid id" for a malformed id, 404 for an unknown one --------------------
    @staticmethod
    def _find(table: dict[str, Record], ident: str) -> Record:
        if not is_object_id(ident):
            raise invalid_id()
        record = table.get(ident)
        if record is None:
            raise not_found()
        return record

    def _find_linked(self, table: dict[str, Record], ident: str) -> Record:
        if is_short_link(ident) and not is_object_id(ident):
            found = self.short_links.get(ident)
            if found is None or found not in table:
                raise not_found()
            return table[found]
        return self._find(table, ident)

    def board(self, ident: str) -> Record:
        return self._find_linked(self.boards, ident)

    def card(self, ident: str) -> Record:
        return self._find_linked(self.cards, ident)

    def get_list(self, ident: str) -> Record:
        return self._find(self.lists, ident)

    def label(self, ident: str) -> Record:
        return self._find(self.labels, ident)

    def custom_field(self, ident: str) -> Record:
        return self._find(self.custom_fields, ident)

    def webhook(self, ident: str) -> Record:
        if not is_object_id(ident):
            raise invalid_value("idWebhook")
        record = self.webhooks.get(ident)
        if record is None:
            raise not_found()
        return record

    def member(self, ident: str, me: str | None = None) -> Record:
        """A member by id, username or ``me``."""
        if ident == "me" and me is not None:
            return self.members[me]
        if ident in self.members:
            return self.members[ident]
        for member in self.members.values():
            if member["username"] == ident:
                return member
        if is_object_id(ident):
            raise not_found()
        raise TrelloError(404, "model not found")

    def param_ref(self, table: dict[str, Record], ident: str | None, name: str) -> Record:
        """A record named by a write parameter: any problem is ``invalid value for <name>``."""
        if not ident:
            raise invalid_value(name)
        linked = table is self.boards or table is self.cards
        found = self.short_links.get(ident, ident) if linked else ident
        record = table.get(found)
        if record is None:
            raise invalid_value(name)
        return record

    def new_short_link(self, ident: str) -> str:
        link = short_link()
        while link in self.short_links:
            link = short_link()
        self.short_links[link] = ident
        return link

    # -- relations -----------------------------------------------------------------------------
    def board_lists(self, board_id: str) -> Iterator[Record]:
        return (rec for rec in self.lists.values() if rec["idBoard"] == board_id)

    def board_cards(self, board_id: str) -> Iterator[Record]:
        return (rec for rec in self.cards.values() if rec["idBoard"] == board_id)

    def list_cards(self, list_id: str) -> Iterator[Record]:
        return (rec for rec in self.cards.values() if rec["idList"] == list_id)

    def board_labels(self, board_id: str) -> Iterator[Record]:
        return (rec for rec in self.labels.values() if rec["idBoard"] == board_id)

    def board_fields(self, board_id: str) -> list[Record]:
        found = [rec for rec in self.custom_fields.values() if rec["idModel"] == board_id]
        return sorted(found, key=lambda rec: rec["pos"])

    def is_board_member(self, board_id: str, member_id: str) -> bool:
        board = self.boards.get(board_id)
        return board is not None and any(m["idMember"] == member_id for m in board["memberships"])


def sort_by_pos(records: Iterator[Record] | list[Record]) -> list[Record]:
    return sorted(records, key=lambda rec: (rec["pos"], rec["id"]))


def resolve_pos(value: Any, siblings: list[Record], name: str = "pos") -> float:
    """``top``, ``bottom`` or a positive number, as a float among ``siblings``."""
    positions = [float(s["pos"]) for s in siblings]
    if value is None or value == "" or value == "bottom":
        return (max(positions) if positions else 0.0) + POS_STEP
    if value == "top":
        return min(positions) / 2 if positions else POS_STEP
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise invalid_value(name) from None
    if number < 0 or number != number:
        raise invalid_value(name)
    return number
