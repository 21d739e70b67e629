"""Board webhooks: the challenge handshake, which subscriptions a change triggers, the payloads.

A subscription's ``event`` (``change_column_value``, ``item_deleted``, ...) is not the
``event.type`` of its deliveries: those use monday's legacy names (``update_column_value``,
``delete_pulse``, ...), mapped by :data:`TRIGGERS`. One change makes one trigger with one
``triggerUuid``; every matching subscription gets a delivery carrying it, and retries resend the
same payload with ``isRetry: true``.

Webhooks created with the *app* token belong to an app: their challenge and deliveries carry an
``Authorization`` header holding a JWT (HS256, the signing secret) with ``accountId``,
``userId``, ``aud`` (the URL), ``iat``, ``exp`` and ``shortLivedToken`` (a token valid for the
API), plus a random ``jti`` so that no two signings are the same. Webhooks created with the
personal token carry no signature, as on monday.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt

from crmsync.sandbox.faults import FaultSet
from crmsync.sandbox.monday.store import ACCOUNT_ID, Webhook
from crmsync.sandbox.webhooks import Delivery, WebhookDispatcher

#: subscription event -> the legacy ``event.type`` of its deliveries
TRIGGERS: dict[str, str] = {
    "change_column_value": "update_column_value",
    "change_specific_column_value": "update_column_value",
    "change_status_column_value": "update_column_value",
    "change_name": "update_name",
    "create_item": "create_pulse",
    "create_update": "create_update",
    "edit_update": "edit_update",
    "delete_update": "delete_update",
    "item_archived": "archive_pulse",
    "item_deleted": "delete_pulse",
    "item_restored": "restore_pulse",
    "item_moved_to_any_group": "move_pulse_into_group",
    "item_moved_to_specific_group": "move_pulse_into_group",
    "create_column": "create_column",
    "create_subitem": "create_pulse",
    "change_subitem_column_value": "update_column_value",
    "change_subitem_name": "update_name",
    "create_subitem_update": "create_update",
    "move_subitem": "move_subitem",
    "subitem_archived": "archive_pulse",
    "subitem_deleted": "delete_pulse",
}
#: subscriptions about subitems, which this emulator has none of
_SUBITEM_EVENTS = {e for e in TRIGGERS if "subitem" in e}

#: monday's documented ~1 retry a minute for 30 minutes
DEFAULT_RETRY_DELAYS: tuple[float, ...] = (60.0,) * 30
JWT_LIFETIME = 300


def trigger_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def subscribed(
    webhook: Webhook,
    event_type: str,
    *,
    column_id: str | None = None,
    column_type: str | None = None,
    group_id: str | None = None,
) -> bool:
    """Does ``webhook`` receive a trigger of legacy type ``event_type``?"""
    if webhook.event in _SUBITEM_EVENTS or TRIGGERS.get(webhook.event) != event_type:
        return False
    config = webhook.config or {}
    if webhook.event == "change_specific_column_value":
        return config.get("columnId") == column_id
    if webhook.event == "change_status_column_value":
        return column_type == "status"
    if webhook.event == "item_moved_to_specific_group":
        return config.get("groupId") == group_id
    return True


class WebhookHub:
    """Signs, sends and retries deliveries; runs challenges."""

    def __init__(
        self,
        faults: FaultSet,
        *,
        signing_secret: str,
        short_lived_token: str,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        timeout: float = 5.0,
    ) -> None:
        self.signing_secret = signing_secret
        self.short_lived_token = short_lived_token
        self.timeout = timeout
        self.dispatcher = WebhookDispatcher(
            faults, retry_delays=retry_delays, on_result=self._on_result, timeout=timeout
        )

    def sign(self, url: str, user_id: int) -> str:
        now = int(time.time())
        claims = {
            "accountId": ACCOUNT_ID,
            "userId": user_id,
            "aud": url,
            "iat": now,
            "exp": now + JWT_LIFETIME,
            "shortLivedToken": self.short_lived_token,
            # every signing differs, as monday's do (each carries a fresh short-lived token): a
            # receiver may bind a token to the one delivery it came with
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self.signing_secret, algorithm="HS256")

    def _headers(self, url: str, app: bool, user_id: int) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": "monday.com webhooks"}
        if app:
            headers["Authorization"] = self.sign(url, user_id)
        return headers

    def challenge(self, url: str, *, app: bool, user_id: int) -> bool:
        """POST ``{"challenge": ...}``; True when the endpoint echoed it with a 2xx."""
        token = secrets.token_urlsafe(24)
        try:
            response = httpx.post(
                url,
                json={"challenge": token},
                headers=self._headers(url, app, user_id),
                timeout=self.timeout,
            )
            return 200 <= response.status_code < 300 and response.json().get("challenge") == token
        except (httpx.HTTPError, ValueError, AttributeError):
            return False

    def deliver(
        self, webhook: Webhook, event_type: str, fields: dict[str, Any], trigger_uuid: str, *, user_id: int
    ) -> None:
        event: dict[str, Any] = {
            "app": "monday",
            "type": event_type,
            "triggerTime": trigger_time(),
            "subscriptionId": webhook.id,
            "isRetry": False,
            "userId": user_id,
            "originalTriggerUuid": None,
            "boardId": webhook.board_id,
            **fields,
            "triggerUuid": trigger_uuid,
        }
        body = json.dumps({"event": event}).encode()
        delivery = Delivery(
            url=webhook.url,
            body=body,
            headers=self._headers(webhook.url, webhook.app, user_id),
            meta={
                "webhook_id": webhook.id,
                "app": webhook.app,
                "user_id": user_id,
                "type": event_type,
                "triggerUuid": trigger_uuid,
            },
        )
        self.dispatcher.submit(delivery)

    def _on_result(self, delivery: Delivery, status: int | None) -> bool:
        if status is None or not 200 <= status < 300:
            # the next attempt is a retry: say so, and sign it afresh
            payload = json.loads(delivery.body)
            payload["event"]["isRetry"] = True
            delivery.body = json.dumps(payload).encode()
            delivery.headers = self._headers(
                delivery.url, bool(delivery.meta.get("app")), int(delivery.meta.get("user_id", 0))
            )
        return True


def new_trigger_uuid() -> str:
    return uuid.uuid4().hex
