"""Items, their column values (one GraphQL type per column type) and updates."""

from __future__ import annotations

from typing import Any

from crmsync.sandbox.monday import columns as cols
from crmsync.sandbox.monday.context import Info, ctx, to_id
from crmsync.sandbox.monday.errors import MondayError
from crmsync.sandbox.monday.paging import MAX_QUERY_IDS
from crmsync.sandbox.monday.resolvers.boards import group_view
from crmsync.sandbox.monday.store import Item, Update


def resolve_items(
    _: Any,
    info: Info,
    ids: list[str] | None = None,
    limit: int | None = None,
    page: int | None = None,
    newest_first: bool | None = None,
    exclude_nonactive: bool | None = None,
) -> list[Item]:
    store = ctx(info).ops.store
    if ids is not None and len(ids) > MAX_QUERY_IDS:
        raise MondayError(
            "InvalidArgumentException",
            f"ids can hold at most {MAX_QUERY_IDS} item ids",
            error_data={"argument": "ids", "count": len(ids)},
        )
    if ids is None:
        found = sorted(store.items.values(), key=lambda i: i.id, reverse=bool(newest_first))
    else:
        wanted = [to_id(i, "InvalidArgumentException", "item_id") for i in ids]
        found = [store.items[i] for i in dict.fromkeys(wanted) if i in store.items]
    if exclude_nonactive:
        found = [i for i in found if i.state == "active"]
    size = limit or (len(found) if ids is not None else 25)
    start = ((page or 1) - 1) * size
    return found[start : start + size]


def resolve_column_values(
    item: Item, info: Info, ids: list[str] | None = None, types: list[str] | None = None
) -> list[dict[str, Any]]:
    context = ctx(info)
    ops = context.ops
    board = ops.store.boards[item.board_id]
    out = []
    for column in board.columns:
        if column.type == "name" or column.archived:
            continue
        if (ids is not None and column.id not in ids) or (types is not None and column.type not in types):
            continue
        stored = item.values.get(column.id)
        typename = cols.VALUE_TYPENAMES.get(column.type, "UnsupportedValue")
        view: dict[str, Any] = {
            "__typename": typename,
            "id": column.id,
            "column": column,
            "type": column.type,
            "text": cols.text_of(column, stored, ops),
            "value": cols.api_value(column, stored, legacy_relations=context.legacy_relations),
        }
        view.update(cols.typed_fields(column, stored, ops))
        out.append(view)
    return out


def resolve_item_updates(
    item: Item, info: Info, limit: int | None = 25, page: int | None = 1
) -> list[Update]:
    updates = [
        u for u in ctx(info).ops.store.updates.values() if u.item_id == item.id and u.parent_id is None
    ]
    updates.sort(key=lambda u: u.id, reverse=True)
    size = limit or 25
    start = ((page or 1) - 1) * size
    return updates[start : start + size]


def resolve_updates(
    _: Any,
    info: Info,
    ids: list[str] | None = None,
    limit: int | None = 25,
    page: int | None = 1,
) -> list[Update]:
    store = ctx(info).ops.store
    updates = sorted(store.updates.values(), key=lambda u: u.id, reverse=True)
    if ids is not None:
        wanted = {to_id(i) for i in ids}
        updates = [u for u in updates if u.id in wanted]
    size = limit or 25
    start = ((page or 1) - 1) * size
    return updates[start : start + size]


def _item_group(item: Item, info: Info) -> dict[str, Any] | None:
    board = ctx(info).ops.store.boards.get(item.board_id)
    group = board.group(item.group_id) if board else None
    return group_view(board, group) if board and group else None


RESOLVERS: dict[str, dict[str, Any]] = {
    "Query": {"items": resolve_items, "updates": resolve_updates},
    "Item": {
        "group": _item_group,
        "board": lambda item, info: ctx(info).ops.store.boards.get(item.board_id),
        "creator_id": lambda item, info: str(item.creator_id),
        "creator": lambda item, info: ctx(info).ops.user(item.creator_id),
        "email": lambda item, info: f"pulse-{item.id}@sandbox.monday.com",
        "url": lambda item, info: f"https://sandbox.monday.com/boards/{item.board_id}/pulses/{item.id}",
        "relative_link": lambda item, info: f"/boards/{item.board_id}/pulses/{item.id}",
        "subitems": lambda item, info: [],
        "column_values": resolve_column_values,
        "updates": resolve_item_updates,
    },
    "ColumnValue": {},
    "Update": {
        "item_id": lambda update, info: str(update.item_id),
        "creator_id": lambda update, info: str(update.creator_id),
        "creator": lambda update, info: ctx(info).ops.user(update.creator_id),
        "updated_at": lambda update, info: update.created_at,
        "replies": lambda update, info: sorted(
            (u for u in ctx(info).ops.store.updates.values() if u.parent_id == update.id), key=lambda u: u.id
        ),
    },
}
