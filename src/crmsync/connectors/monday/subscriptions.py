"""Board webhooks crmsync needs: list them, and create the missing ones (never a duplicate).

monday's ``Webhook`` type shows ``id board_id event config`` but not the URL, so a board's
subscription to an event (with the same ``config``) counts as present whoever made it; creating
one runs monday's challenge against the URL, which must already answer (``crmsync serve``).
Run :func:`ensure_webhooks` again at any time to heal subscriptions someone deleted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from crmsync.connectors.monday.client import (
    COMPLEXITY_FIELD,
    MUTATION_COST,
    MondayClient,
    idempotency_key,
    raise_first,
)
from crmsync.connectors.monday.webhooks import SUBSCRIPTIONS

#: the subscriptions a synced board needs: every kind of change :mod:`.webhooks` reads
NEEDED_EVENTS: tuple[str, ...] = tuple(SUBSCRIPTIONS.values())
#: the path under the web app's base URL that receives a connection's deliveries
ROUTE = "/webhooks/monday/{connection}"


@dataclass(frozen=True)
class Subscription:
    id: str
    board_id: str
    event: str
    config: dict[str, Any] | None = None


@dataclass
class EnsureResult:
    created: list[Subscription] = field(default_factory=list)
    existing: list[Subscription] = field(default_factory=list)


def receiver_url(base_url: str, connection: str) -> str:
    """Where monday should deliver the events of ``connection``."""
    return base_url.rstrip("/") + ROUTE.format(connection=connection)


def _config(value: Any) -> dict[str, Any] | None:
    if isinstance(value, str) and value:
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return dict(value) if isinstance(value, Mapping) and value else None


def list_webhooks(client: MondayClient, board_id: str) -> list[Subscription]:
    """The board's webhook subscriptions."""
    reply = client.query(
        f"query ($b: ID!) {{ webhooks(board_id: $b) {{ id board_id event config }} {COMPLEXITY_FIELD} }}",
        {"b": str(board_id)},
        cost=1_000,
    )
    raise_first(reply)
    return [
        Subscription(str(w["id"]), str(w["board_id"]), str(w["event"]), _config(w.get("config")))
        for w in reply.data.get("webhooks") or []
    ]


def create_webhook(
    client: MondayClient,
    board_id: str,
    url: str,
    event: str,
    config: Mapping[str, Any] | None = None,
    *,
    salt: str = "",
) -> Subscription:
    """Subscribe ``url`` to ``event`` on the board (monday sends its challenge to ``url`` first).

    The request's idempotency key is derived from the subscription and ``salt`` (what the caller
    saw on the board), so a request resent after a crash is not run twice.
    """
    variables: dict[str, Any] = {"b": str(board_id), "u": url, "e": event}
    text = "mutation ($b: ID!, $u: String!, $e: WebhookEventType!, $c: JSON) { "
    text += "create_webhook(board_id: $b, url: $u, event: $e, config: $c) { id board_id event config } }"
    variables["c"] = json.dumps(dict(config)) if config else None
    key = idempotency_key("monday-webhook", str(board_id), url, event, variables["c"], salt)
    reply = client.mutate(text, variables, cost=MUTATION_COST, key=key)
    raise_first(reply)
    made = reply.data["create_webhook"]
    return Subscription(
        str(made["id"]), str(made["board_id"]), str(made["event"]), _config(made.get("config"))
    )


def ensure_webhooks(
    client: MondayClient, board_id: str, url: str, events: Sequence[str] = NEEDED_EVENTS
) -> EnsureResult:
    """Create the board's subscriptions to ``events`` that are missing; list those already there."""
    result = EnsureResult()
    listed = list_webhooks(client, board_id)
    present = {(s.event, json.dumps(s.config, sort_keys=True)): s for s in listed}
    seen = ",".join(sorted(s.id for s in listed))  # a webhook deleted since gives a new key
    for event in events:
        found = present.get((event, json.dumps(None)))
        if found is not None:
            result.existing.append(found)
        else:
            result.created.append(create_webhook(client, board_id, url, event, salt=seen))
    return result
