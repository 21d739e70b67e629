"""``webhooks``, ``create_webhook`` (with the challenge handshake) and ``delete_webhook``."""

from __future__ import annotations

import json
from typing import Any

from crmsync.sandbox.monday.context import Info, ctx, decode_object, to_id
from crmsync.sandbox.monday.errors import MondayError
from crmsync.sandbox.monday.store import Webhook

MAX_URL = 255


def webhook_view(webhook: Webhook) -> dict[str, Any]:
    return {
        "id": webhook.id,
        "board_id": webhook.board_id,
        "event": webhook.event,
        "config": json.dumps(webhook.config) if webhook.config is not None else None,
    }


def resolve_webhooks(
    _: Any, info: Info, board_id: str, app_webhooks_only: bool | None = None
) -> list[dict[str, Any]]:
    context = ctx(info)
    board = context.ops.board(to_id(board_id, "InvalidBoardIdException", "board_id"))
    hooks = [w for w in context.ops.store.webhooks.values() if w.board_id == board.id]
    if app_webhooks_only:
        hooks = [w for w in hooks if w.app]
    return [webhook_view(w) for w in sorted(hooks, key=lambda w: w.id)]


def _invalid(message: str, **data: Any) -> MondayError:
    return MondayError("InvalidArgumentException", message, error_data=data)


def create_webhook(
    _: Any, info: Info, board_id: str, url: str, event: str, config: Any = None
) -> dict[str, Any]:
    context = ctx(info)
    ops = context.ops
    board = ops.board(to_id(board_id, "InvalidBoardIdException", "board_id"))
    if len(url) > MAX_URL or not url.startswith(("http://", "https://")):
        raise _invalid(f"url must be an http(s) URL of at most {MAX_URL} characters", url=url)
    settings = decode_object(config, "config") or None
    if event == "change_specific_column_value":
        column_id = (settings or {}).get("columnId")
        if not column_id or board.column(str(column_id)) is None:
            raise _invalid(
                "config must name an existing columnId for change_specific_column_value", config=settings
            )
    if event == "item_moved_to_specific_group":
        group_id = (settings or {}).get("groupId")
        if not group_id or board.group(str(group_id)) is None:
            raise _invalid(
                "config must name an existing groupId for item_moved_to_specific_group", config=settings
            )
    with context.unlocked():
        answered = context.hub.challenge(url, app=context.app, user_id=context.user_id)
    if not answered:
        raise _invalid("Failed to communicate with URL provided.", url=url)
    webhook = ops.add_webhook(board.id, url, event, settings, app=context.app, user_id=context.user_id)
    return webhook_view(webhook)


def delete_webhook(_: Any, info: Info, id: str) -> dict[str, Any]:
    store = ctx(info).ops.store
    webhook = store.webhooks.get(to_id(id))
    if webhook is None:
        raise MondayError(
            "ResourceNotFoundException",
            f"Webhook with id {id} not found",
            error_data={"id": id},
            status_code=404,
        )
    del store.webhooks[webhook.id]
    return webhook_view(webhook)


RESOLVERS: dict[str, dict[str, Any]] = {
    "Query": {"webhooks": resolve_webhooks},
    "Mutation": {"create_webhook": create_webhook, "delete_webhook": delete_webhook},
}
