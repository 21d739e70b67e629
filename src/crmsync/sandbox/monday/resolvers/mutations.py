"""Item mutations, plus ``create_group`` and ``create_column`` for building boards."""

from __future__ import annotations

import secrets
import string
from typing import Any

from crmsync.sandbox.monday import columns as cols
from crmsync.sandbox.monday.context import Info, ctx, decode_json, decode_object, optional_id, to_id
from crmsync.sandbox.monday.errors import MondayError
from crmsync.sandbox.monday.resolvers.boards import group_view
from crmsync.sandbox.monday.store import Column, Group, Item, Update

_DEFAULT_STATUS = {
    "labels": {"0": "Working on it", "1": "Done", "2": "Stuck"},
    "labels_colors": {
        str(i): {"color": c, "border": b, "var_name": v}
        for i, (c, b, v) in cols.STATUS_STYLES.items()
        if i in (0, 1, 2)
    },
    "done_colors": [1],
}


def _board_id(value: Any) -> int:
    return to_id(value, "InvalidBoardIdException", "board_id")


def _item_id(value: Any) -> int | None:
    return optional_id(value, "InvalidArgumentException", "item_id")


def create_item(
    _: Any,
    info: Info,
    board_id: str,
    item_name: str,
    group_id: str | None = None,
    column_values: Any = None,
    create_labels_if_missing: bool | None = None,
    **__: Any,
) -> Item:
    context = ctx(info)
    values = decode_object(column_values, "column_values")
    return context.ops.create_item(
        _board_id(board_id),
        item_name,
        group_id=group_id,
        values=values,
        create_labels=bool(create_labels_if_missing),
        user_id=context.user_id,
    )


def change_column_value(
    _: Any,
    info: Info,
    board_id: str,
    column_id: str,
    value: Any,
    item_id: str | None = None,
    create_labels_if_missing: bool | None = None,
) -> Item:
    context = ctx(info)
    return context.ops.change_values(
        _board_id(board_id),
        _item_id(item_id),
        {column_id: decode_json(value, "value")},
        create_labels=bool(create_labels_if_missing),
        user_id=context.user_id,
    )


def _simple(column: Column | None, value: str | None) -> Any:
    """A plain string as the column's write format (``"true"`` ticks a checkbox, ``"1,2"`` links items)."""
    if value is None or column is None:
        return value
    if column.type == "checkbox":
        return {"checked": value.strip().lower() in ("true", "v", "1", "yes")} if value else None
    if column.type == "board_relation":
        return {"item_ids": [p.strip() for p in value.split(",") if p.strip()]}
    return value


def change_simple_column_value(
    _: Any,
    info: Info,
    board_id: str,
    column_id: str,
    value: str | None = None,
    item_id: str | None = None,
    create_labels_if_missing: bool | None = None,
) -> Item:
    context = ctx(info)
    board = context.ops.board(_board_id(board_id))
    return context.ops.change_values(
        board.id,
        _item_id(item_id),
        {column_id: _simple(board.column(column_id), value)},
        create_labels=bool(create_labels_if_missing),
        user_id=context.user_id,
    )


def change_multiple_column_values(
    _: Any,
    info: Info,
    board_id: str,
    column_values: Any,
    item_id: str | None = None,
    create_labels_if_missing: bool | None = None,
) -> Item:
    context = ctx(info)
    return context.ops.change_values(
        _board_id(board_id),
        _item_id(item_id),
        decode_object(column_values, "column_values"),
        create_labels=bool(create_labels_if_missing),
        user_id=context.user_id,
    )


def delete_item(_: Any, info: Info, item_id: str | None = None) -> Item:
    context = ctx(info)
    return context.ops.delete_item(_item_id(item_id), user_id=context.user_id)


def archive_item(_: Any, info: Info, item_id: str | None = None) -> Item:
    context = ctx(info)
    return context.ops.archive_item(_item_id(item_id), user_id=context.user_id)


def move_item_to_group(_: Any, info: Info, group_id: str, item_id: str | None = None) -> Item:
    context = ctx(info)
    return context.ops.move_item(_item_id(item_id), group_id, user_id=context.user_id)


def create_update(
    _: Any, info: Info, body: str, item_id: str | None = None, parent_id: str | None = None
) -> Update:
    context = ctx(info)
    return context.ops.create_update(
        _item_id(item_id), body, parent_id=optional_id(parent_id), user_id=context.user_id
    )


def _suffix() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "mk" + "".join(secrets.choice(alphabet) for _ in range(6))


def create_group(
    _: Any,
    info: Info,
    board_id: str,
    group_name: str,
    group_color: str | None = None,
    **__: Any,
) -> dict[str, Any]:
    context = ctx(info)
    board = context.ops.board(_board_id(board_id))
    if not 1 <= len(group_name) <= 255:
        raise MondayError(
            "InvalidArgumentException",
            "Group name must be between 1 and 255 characters",
            error_data={"argument": "group_name"},
        )
    position = max((float(g.position) for g in board.groups), default=0.0) + 65536
    group = Group(
        id=f"group_{_suffix()}", title=group_name, color=group_color or "#579bfc", position=str(int(position))
    )
    board.groups.append(group)
    return group_view(board, group)


def create_column(
    _: Any,
    info: Info,
    board_id: str,
    title: str,
    column_type: str,
    defaults: Any = None,
    id: str | None = None,
    description: str | None = None,
) -> Column:
    context = ctx(info)
    board = context.ops.board(_board_id(board_id))
    if column_type not in cols.SUPPORTED:
        raise MondayError(
            "InvalidArgumentException",
            f"The sandbox cannot create {column_type} columns; supported: {', '.join(cols.SUPPORTED)}",
            error_data={"column_type": column_type},
        )
    column_id = id or f"{column_type}_{_suffix()}"
    if board.column(column_id) is not None:
        raise MondayError(
            "InvalidColumnIdException",
            f"Column id {column_id} already exists on the board",
            error_data={"column_id": column_id},
        )
    settings = decode_object(defaults, "defaults")
    if column_type == "status" and not settings.get("labels"):
        settings = {**_DEFAULT_STATUS, **settings}
    column = Column(id=column_id, title=title, type=column_type, settings=settings, description=description)
    board.columns.append(column)
    return column


RESOLVERS: dict[str, dict[str, Any]] = {
    "Mutation": {
        "create_item": create_item,
        "change_column_value": change_column_value,
        "change_simple_column_value": change_simple_column_value,
        "change_multiple_column_values": change_multiple_column_values,
        "delete_item": delete_item,
        "archive_item": archive_item,
        "move_item_to_group": move_item_to_group,
        "create_update": create_update,
        "create_group": create_group,
        "create_column": create_column,
    }
}
