"""Boards, groups, columns and the item pages hanging off them."""

from __future__ import annotations

import json
from typing import Any

from crmsync.sandbox.monday import paging
from crmsync.sandbox.monday.context import Info, RequestContext, ctx, to_id
from crmsync.sandbox.monday.store import Board, Group, Item


def group_view(board: Board, group: Group) -> dict[str, Any]:
    return {
        "id": group.id,
        "title": group.title,
        "color": group.color,
        "position": group.position,
        "archived": group.archived,
        "deleted": group.deleted,
        "_board": board,
    }


def items_response(context: RequestContext, ids: list[int], cursor: str | None) -> dict[str, Any]:
    store = context.ops.store
    items = [store.items[i] for i in ids if i in store.items and store.items[i].state == "active"]
    return {"cursor": cursor, "items": items}


def page_of(
    context: RequestContext,
    board: Board,
    candidates: list[Item],
    limit: int | None,
    cursor: str | None,
    query: dict[str, Any] | None,
) -> dict[str, Any]:
    size = paging.check_limit(limit)
    if cursor:
        ids, following = context.cursors.next_page(cursor, size)
        return items_response(context, ids, following)
    selected = paging.select(board, candidates, query, context.ops)
    ids, following = context.cursors.first_page([i.id for i in selected], size)
    return items_response(context, ids, following)


def resolve_boards(
    _: Any,
    info: Info,
    ids: list[str] | None = None,
    limit: int | None = None,
    page: int | None = None,
    state: str = "active",
    board_kind: str | None = None,
    workspace_ids: list[Any] | None = None,
    **__: Any,
) -> list[Board]:
    store = ctx(info).ops.store
    boards = sorted(store.boards.values(), key=lambda b: b.id)
    if ids is not None:
        wanted = {to_id(i, "InvalidBoardIdException", "board_id") for i in ids}
        boards = [b for b in boards if b.id in wanted]
    if state != "all":
        boards = [b for b in boards if b.state == state]
    if board_kind:
        boards = [b for b in boards if b.board_kind == board_kind]
    if workspace_ids:
        spaces = {int(w) for w in workspace_ids if w is not None}
        boards = [b for b in boards if b.workspace_id in spaces]
    size = limit or 25
    start = ((page or 1) - 1) * size
    return boards[start : start + size]


def resolve_board_columns(
    board: Board, info: Info, ids: list[str] | None = None, types: list[str] | None = None
) -> list[Any]:
    columns = [c for c in board.columns if not c.archived]
    if ids is not None:
        columns = [c for c in columns if c.id in ids]
    if types is not None:
        columns = [c for c in columns if c.type in types]
    return columns


def resolve_board_groups(board: Board, info: Info, ids: list[str] | None = None) -> list[Any]:
    groups = [g for g in board.groups if not g.deleted]
    if ids is not None:
        groups = [g for g in groups if g.id in ids]
    return [group_view(board, g) for g in groups]


def resolve_board_items_page(
    board: Board,
    info: Info,
    limit: int | None = 25,
    cursor: str | None = None,
    query_params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    context = ctx(info)
    return page_of(context, board, context.ops.store.board_items(board.id), limit, cursor, query_params)


def resolve_group_items_page(
    group: dict[str, Any],
    info: Info,
    limit: int | None = 25,
    cursor: str | None = None,
    query_params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    context = ctx(info)
    board: Board = group["_board"]
    items = [i for i in context.ops.store.board_items(board.id) if i.group_id == group["id"]]
    return page_of(context, board, items, limit, cursor, query_params)


def resolve_next_items_page(_: Any, info: Info, cursor: str, limit: int = 25) -> dict[str, Any]:
    context = ctx(info)
    ids, following = context.cursors.next_page(cursor, paging.check_limit(limit))
    return items_response(context, ids, following)


def resolve_items_page_by_column_values(
    _: Any,
    info: Info,
    board_id: str,
    columns: list[dict[str, Any]] | None = None,
    limit: int = 25,
    cursor: str | None = None,
) -> dict[str, Any]:
    context = ctx(info)
    board = context.ops.board(to_id(board_id, "InvalidBoardIdException", "board_id"))
    rules = [
        {"column_id": c["column_id"], "compare_value": [v for v in c["column_values"] if v is not None]}
        for c in columns or []
    ]
    query = {"rules": rules, "operator": "and"} if rules else None
    return page_of(context, board, context.ops.store.board_items(board.id), limit, cursor, query)


RESOLVERS: dict[str, dict[str, Any]] = {
    "Query": {
        "boards": resolve_boards,
        "next_items_page": resolve_next_items_page,
        "items_page_by_column_values": resolve_items_page_by_column_values,
    },
    "Board": {
        "columns": resolve_board_columns,
        "groups": resolve_board_groups,
        "items_page": resolve_board_items_page,
        "top_group": lambda board, info: group_view(board, board.top_group()),
        "items_count": lambda board, info: ctx(info).ops.store.item_count(board.id),
        "url": lambda board, info: f"https://sandbox.monday.com/boards/{board.id}",
        "permissions": lambda board, info: "everyone",
        "owners": lambda board, info: [u for u in [ctx(info).ops.user(board.owner_id or 0)] if u],
    },
    "Group": {"items_page": resolve_group_items_page},
    "Column": {"settings_str": lambda column, info: json.dumps(column.settings, separators=(",", ":"))},
}
