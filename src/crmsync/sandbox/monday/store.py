"""The emulated account: users, boards with their columns and groups, items, updates, webhooks.

Plain data with no behaviour beyond lookups; :mod:`.operations` changes it and
:mod:`.columns` knows what a stored column value means. Ids are ints inside and strings on the
wire, numbered from large bases so they look like monday's 10-digit ids.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

ACCOUNT_ID = 31415926


def iso_now() -> str:
    """Now as monday writes timestamps: ``2025-02-05T10:20:30Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class User:
    id: int
    name: str
    email: str
    kind: str = "person"  # person | team


@dataclass
class Column:
    id: str
    title: str
    type: str  # the API's ColumnType name: status, text, numbers, ...
    settings: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    archived: bool = False


@dataclass
class Group:
    id: str
    title: str
    color: str = "#579bfc"
    position: str = "65536"
    archived: bool = False
    deleted: bool = False


@dataclass
class Board:
    id: int
    name: str
    columns: list[Column]
    groups: list[Group]
    description: str | None = None
    state: str = "active"
    board_kind: str = "public"
    workspace_id: int | None = None
    owner_id: int | None = None
    updated_at: str = field(default_factory=iso_now)

    def column(self, column_id: str) -> Column | None:
        return next((c for c in self.columns if c.id == column_id), None)

    def group(self, group_id: str) -> Group | None:
        return next((g for g in self.groups if g.id == group_id and not g.deleted), None)

    def top_group(self) -> Group:
        return next(g for g in self.groups if not g.deleted and not g.archived)


@dataclass
class Item:
    id: int
    board_id: int
    group_id: str
    name: str
    creator_id: int
    position: float
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    state: str = "active"  # active | archived | deleted
    created_at: str = field(default_factory=iso_now)
    updated_at: str = field(default_factory=iso_now)
    updated_seq: int = 0  # orders changes made within the same second


@dataclass
class Update:
    id: int
    item_id: int
    body: str
    text_body: str
    creator_id: int
    parent_id: int | None = None
    created_at: str = field(default_factory=iso_now)


@dataclass
class Webhook:
    id: int
    board_id: int
    url: str
    event: str
    config: dict[str, Any] | None
    app: bool  # created with the app token: deliveries carry a signed JWT
    user_id: int


class Store:
    """Everything in the account, keyed by id; callers hold the emulator's lock."""

    def __init__(self) -> None:
        self.users: dict[int, User] = {}
        self.boards: dict[int, Board] = {}
        self.items: dict[int, Item] = {}
        self.updates: dict[int, Update] = {}
        self.webhooks: dict[int, Webhook] = {}
        self._board_ids = itertools.count(1_800_000_001)
        self._item_ids = itertools.count(1_900_000_001)
        self._other_ids = itertools.count(300_000_001)
        self._seq = itertools.count(1)

    # -- ids --------------------------------------------------------------------------------
    def next_board_id(self) -> int:
        return next(self._board_ids)

    def next_item_id(self) -> int:
        return next(self._item_ids)

    def next_id(self) -> int:
        """Ids of updates and webhooks."""
        return next(self._other_ids)

    def next_seq(self) -> int:
        return next(self._seq)

    # -- lookups ------------------------------------------------------------------------------
    def board_items(self, board_id: int, *, active_only: bool = True) -> list[Item]:
        found = [i for i in self.items.values() if i.board_id == board_id]
        if active_only:
            found = [i for i in found if i.state == "active"]
        return sorted(found, key=lambda i: i.position)

    def item_count(self, board_id: int) -> int:
        return sum(1 for i in self.items.values() if i.board_id == board_id and i.state != "deleted")

    # -- persistence -------------------------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        return {
            "users": [asdict(u) for u in self.users.values()],
            "boards": [asdict(b) for b in self.boards.values()],
            "items": [asdict(i) for i in self.items.values()],
            "updates": [asdict(u) for u in self.updates.values()],
            "webhooks": [asdict(w) for w in self.webhooks.values()],
        }

    @classmethod
    def load(cls, data: dict[str, Any]) -> Store:
        store = cls()
        for u in data.get("users", []):
            store.users[u["id"]] = User(**u)
        for b in data.get("boards", []):
            columns = [Column(**c) for c in b.pop("columns")]
            groups = [Group(**g) for g in b.pop("groups")]
            store.boards[b["id"]] = Board(columns=columns, groups=groups, **b)
        for i in data.get("items", []):
            store.items[i["id"]] = Item(**i)
        for u in data.get("updates", []):
            store.updates[u["id"]] = Update(**u)
        for w in data.get("webhooks", []):
            store.webhooks[w["id"]] = Webhook(**w)
        store._board_ids = itertools.count(max(store.boards, default=1_800_000_000) + 1)
        store._item_ids = itertools.count(max(store.items, default=1_900_000_000) + 1)
        others = [*store.updates, *store.webhooks]
        store._other_ids = itertools.count(max(others, default=300_000_000) + 1)
        seqs = [i.updated_seq for i in store.items.values()]
        store._seq = itertools.count(max(seqs, default=0) + 1)
        return store
