"""Every change to the account, validated as monday does and announced to webhooks.

The GraphQL mutations and the "person in the UI" helpers of the emulator both call these, so
a change made either way is validated, stored and delivered the same way. Callers hold the
emulator's lock.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from crmsync.sandbox.monday import columns as cols
from crmsync.sandbox.monday.errors import MondayError, column_value_error
from crmsync.sandbox.monday.store import Board, Column, Group, Item, Store, Update, User, Webhook, iso_now
from crmsync.sandbox.monday.webhooks import WebhookHub, new_trigger_uuid, subscribed

MAX_NAME = 255
DEFAULT_MAX_ITEMS = 10_000


def _changed_at() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Operations:
    """The account's rules; implements :class:`crmsync.sandbox.monday.columns.Lookup`."""

    def __init__(
        self, store: Store, hub: WebhookHub, *, max_items_per_board: int = DEFAULT_MAX_ITEMS
    ) -> None:
        self.store = store
        self.hub = hub
        self.max_items_per_board = max_items_per_board

    # -- Lookup --------------------------------------------------------------------------------
    def user(self, user_id: int) -> User | None:
        return self.store.users.get(user_id)

    def item(self, item_id: int) -> Item | None:
        return self.store.items.get(item_id)

    # -- finding things, with monday's errors ---------------------------------------------------
    def board(self, board_id: int) -> Board:
        board = self.store.boards.get(board_id)
        if board is None or board.state == "deleted":
            raise MondayError("InvalidBoardIdException", "Board not found", error_data={"board_id": board_id})
        return board

    def live_item(self, item_id: int | None, board_id: int | None = None) -> Item:
        item = self.store.items.get(item_id) if item_id is not None else None
        if item is None or item.state == "deleted" or (board_id is not None and item.board_id != board_id):
            raise MondayError(
                "ResourceNotFoundException",
                f"Item with id {item_id} not found",
                error_data={"item_id": item_id},
                status_code=404,
            )
        return item

    def _column(self, board: Board, column_id: str) -> Column:
        column = board.column(column_id)
        if column is None or column.archived:
            raise MondayError(
                "InvalidColumnIdException",
                "This column ID doesn't exist for the board",
                error_data={"column_id": column_id, "board_id": board.id},
            )
        return column

    def _group(self, board: Board, group_id: str) -> Group:
        group = board.group(group_id)
        if group is None:
            raise MondayError(
                "InvalidGroupIdException",
                "Group not found",
                error_data={"group_id": group_id, "board_id": board.id},
            )
        return group

    @staticmethod
    def check_name(name: str) -> str:
        if not 1 <= len(name) <= MAX_NAME:
            raise MondayError(
                "ItemNameTooLongException",
                f"Item name must be between 1 and {MAX_NAME} characters long",
                error_data={"item_name_length": len(name)},
            )
        return name

    # -- items -----------------------------------------------------------------------------------
    def create_item(
        self,
        board_id: int,
        name: str,
        *,
        group_id: str | None,
        values: dict[str, Any] | None,
        create_labels: bool,
        user_id: int,
    ) -> Item:
        board = self.board(board_id)
        self.check_name(name)
        group = self._group(board, group_id) if group_id else board.top_group()
        if self.store.item_count(board.id) >= self.max_items_per_board:
            raise MondayError(
                "ItemsLimitationException",
                f"The board has reached its limit of {self.max_items_per_board} items",
                error_data={"board_id": board.id, "limit": self.max_items_per_board},
            )
        parsed = self._parse_values(board, dict(values or {}), create_labels)
        parsed.pop("name", None)
        positions = [i.position for i in self.store.items.values() if i.board_id == board.id]
        item = Item(
            id=self.store.next_item_id(),
            board_id=board.id,
            group_id=group.id,
            name=name,
            creator_id=user_id,
            position=max(positions, default=0.0) + 1.0,
            values={k: v for k, v in parsed.items() if v is not None},
            updated_seq=self.store.next_seq(),
        )
        self.store.items[item.id] = item
        board.updated_at = iso_now()
        self._emit(
            board,
            "create_pulse",
            {
                "pulseId": item.id,
                "pulseName": item.name,
                "groupId": group.id,
                "groupName": group.title,
                "groupColor": group.color,
                "isTopGroup": group is board.top_group(),
                "columnValues": {
                    cid: cols.webhook_value(self._column(board, cid), v, self)
                    for cid, v in item.values.items()
                },
            },
            user_id,
        )
        return item

    def _parse_values(self, board: Board, values: dict[str, Any], create_labels: bool) -> dict[str, Any]:
        """Validate every value first, so that a bad one changes nothing."""
        changed_at = _changed_at()
        parsed: dict[str, Any] = {}
        for column_id, raw in values.items():
            if column_id == "name":
                if not isinstance(raw, str):
                    raise column_value_error("name", raw)
                parsed["name"] = self.check_name(raw)
                continue
            column = self._column(board, column_id)
            parsed[column_id] = cols.parse_write(
                column, raw, lookup=self, create_labels=create_labels, changed_at=changed_at
            )
        return parsed

    def change_values(
        self,
        board_id: int,
        item_id: int | None,
        values: dict[str, Any],
        *,
        create_labels: bool,
        user_id: int,
    ) -> Item:
        """Write column values (decoded JSON or simple strings); ``"name"`` renames the item."""
        board = self.board(board_id)
        item = self.live_item(item_id, board.id)
        parsed = self._parse_values(board, values, create_labels)
        group = board.group(item.group_id) or board.top_group()
        is_top = group is board.top_group()
        for column_id, stored in parsed.items():
            if column_id == "name":
                if stored != item.name:
                    previous, item.name = item.name, stored
                    self._touch(board, item)
                    self._emit(
                        board,
                        "update_name",
                        {
                            "pulseId": item.id,
                            "groupId": item.group_id,
                            "value": {"name": item.name},
                            "previousValue": {"name": previous},
                        },
                        user_id,
                    )
                continue
            column = self._column(board, column_id)
            before = item.values.get(column_id)
            if _same(before, stored):
                continue
            previous_webhook = cols.webhook_value(column, before, self)
            if stored is None:
                item.values.pop(column_id, None)
            else:
                item.values[column_id] = stored
            self._touch(board, item)
            self._emit(
                board,
                "update_column_value",
                {
                    "pulseId": item.id,
                    "pulseName": item.name,
                    "groupId": item.group_id,
                    "columnId": column.id,
                    "columnType": cols.internal_type(column),
                    "columnTitle": column.title,
                    "value": cols.webhook_value(column, stored, self),
                    "previousValue": previous_webhook,
                    "changedAt": time.time(),
                    "isTopGroup": is_top,
                },
                user_id,
                column_id=column.id,
                column_type=column.type,
            )
        return item

    def archive_item(self, item_id: int | None, *, user_id: int) -> Item:
        item = self.live_item(item_id)
        if item.state != "archived":
            item.state = "archived"
            board = self.board(item.board_id)
            self._touch(board, item)
            self._emit(board, "archive_pulse", {"itemId": item.id, "itemName": item.name}, user_id)
        return item

    def delete_item(self, item_id: int | None, *, user_id: int) -> Item:
        item = self.live_item(item_id)
        item.state = "deleted"
        board = self.store.boards[item.board_id]
        self._touch(board, item)
        self._emit(board, "delete_pulse", {"itemId": item.id, "itemName": item.name}, user_id)
        return item

    def move_item(self, item_id: int | None, group_id: str, *, user_id: int) -> Item:
        item = self.live_item(item_id)
        board = self.board(item.board_id)
        group = self._group(board, group_id)
        if group.id == item.group_id:
            return item
        source, item.group_id = item.group_id, group.id
        self._touch(board, item)
        self._emit(
            board,
            "move_pulse_into_group",
            {
                "pulseId": item.id,
                "sourceGroupId": source,
                "destGroupId": group.id,
                "destGroup": {
                    "id": group.id,
                    "title": group.title,
                    "color": group.color,
                    "is_top_group": group is board.top_group(),
                },
            },
            user_id,
            group_id=group.id,
        )
        return item

    def create_update(self, item_id: int | None, body: str, *, parent_id: int | None, user_id: int) -> Update:
        item = self.live_item(item_id)
        if not body.strip():
            raise MondayError(
                "InvalidArgumentException", "Update body cannot be empty", error_data={"argument": "body"}
            )
        if parent_id is not None and parent_id not in self.store.updates:
            raise MondayError(
                "ResourceNotFoundException",
                f"Update with id {parent_id} not found",
                error_data={"parent_id": parent_id},
                status_code=404,
            )
        text_body = _strip_html(body)
        update = Update(
            id=self.store.next_id(),
            item_id=item.id,
            body=body if body.lstrip().startswith("<") else f"<p>{body}</p>",
            text_body=text_body,
            creator_id=user_id,
            parent_id=parent_id,
        )
        self.store.updates[update.id] = update
        board = self.board(item.board_id)
        self._emit(
            board,
            "create_update",
            {
                "pulseId": item.id,
                "body": update.body,
                "textBody": update.text_body,
                "updateId": update.id,
                "replyId": parent_id,
            },
            user_id,
        )
        return update

    # -- webhooks --------------------------------------------------------------------------------
    def add_webhook(
        self, board_id: int, url: str, event: str, config: dict[str, Any] | None, *, app: bool, user_id: int
    ) -> Webhook:
        webhook = Webhook(
            id=self.store.next_id(),
            board_id=board_id,
            url=url,
            event=event,
            config=config,
            app=app,
            user_id=user_id,
        )
        self.store.webhooks[webhook.id] = webhook
        return webhook

    def _emit(
        self, board: Board, event_type: str, fields: dict[str, Any], user_id: int, **match: Any
    ) -> None:
        trigger = new_trigger_uuid()
        for webhook in list(self.store.webhooks.values()):
            if webhook.board_id == board.id and subscribed(webhook, event_type, **match):
                self.hub.deliver(webhook, event_type, fields, trigger, user_id=user_id)

    def _touch(self, board: Board, item: Item) -> None:
        item.updated_at = iso_now()
        item.updated_seq = self.store.next_seq()
        board.updated_at = item.updated_at


def _same(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    def strip(v: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if v is None else {k: x for k, x in v.items() if k != "changed_at"}

    return strip(a) == strip(b)


def _strip_html(body: str) -> str:
    import re

    return re.sub(r"<[^>]+>", "", body).strip()
