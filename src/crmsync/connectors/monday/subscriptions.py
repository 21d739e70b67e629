"""Board webhooks crmsync needs: how they are protected, list them, create the missing ones.

monday signs the deliveries of webhooks created with an **app's** token (a JWT checked with the
app's signing secret) and not those created with a **personal** token. :func:`webhook_auth` says
which protection a connection gets: *signed* when it has an ``app_token`` (which creates the
webhooks) and a ``signing_secret``; otherwise a *secret URL*: the callback URL carries an
unguessable per-connection secret that the receiver checks.

monday's ``Webhook`` type shows ``id board_id event config`` but not the URL, so a board's
subscription to an event (with the same ``config``) counts as present whoever made it; creating
one runs monday's challenge against the URL, which must already answer (``crmsync run``).
Run :func:`ensure_webhooks` again at any time to heal subscriptions someone deleted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

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
#: the path under the web app's base URL that receives a connection's signed deliveries
ROUTE = "/webhooks/monday/{connection}"
#: the same with the connection's secret: unsigned deliveries (webhooks made with a personal token)
SECRET_ROUTE = "/webhooks/monday/{connection}/{secret}"  # noqa: S105 (a route)
#: what monday answers when the challenge could not reach the callback URL
UNREACHABLE = "Failed to communicate with URL provided"

Protection = Literal["signed", "secret_url"]


@dataclass(frozen=True)
class WebhookAuth:
    """How a connection's deliveries are authenticated, and what in its settings does not fit."""

    protection: Protection
    warnings: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.protection == "signed":
            return (
                "webhooks are made with app_token and signed by monday: each delivery's JWT is "
                "checked (signature with signing_secret, audience, expiry, used once)"
            )
        return (
            "webhooks are made with the personal token, which monday does not sign: their "
            "callback URL carries a secret of this connection, checked on every delivery"
        )


def webhook_auth(app_token: str | None, signing_secret: str | None) -> WebhookAuth:
    """The protection a monday connection's webhooks get from its settings."""
    if app_token and signing_secret:
        return WebhookAuth("signed")
    warnings: list[str] = []
    if signing_secret:
        warnings.append(
            "signing_secret is set, but no app_token: webhooks created with a personal token are "
            "never signed, so no delivery could be verified with it. Set app_token to the app's "
            "token (it may be the same as token) to have them signed; until then a secret in the "
            "callback URL protects them"
        )
    if app_token:
        warnings.append(
            "app_token is set without signing_secret: monday signs the deliveries but crmsync cannot "
            "verify them; a secret in the callback URL protects them instead. Set signing_secret "
            "to the app's Signing Secret"
        )
    return WebhookAuth("secret_url", tuple(warnings))


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


def receiver_url(base_url: str, connection: str, secret: str | None = None) -> str:
    """Where monday should deliver the events of ``connection`` (with its secret: unsigned ones)."""
    if secret is None:
        return base_url.rstrip("/") + ROUTE.format(connection=connection)
    return base_url.rstrip("/") + SECRET_ROUTE.format(connection=connection, secret=secret)


def _config(value: Any) -> dict[str, Any] | None:
    if isinstance(value, str) and value:
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return dict(value) if isinstance(value, Mapping) and value else None


def list_webhooks(client: MondayClient, board_id: str, *, app_only: bool = False) -> list[Subscription]:
    """The board's webhook subscriptions (``app_only``: those an app's token created, which monday signs)."""
    reply = client.query(
        "query ($b: ID!, $a: Boolean) { webhooks(board_id: $b, app_webhooks_only: $a) "
        f"{{ id board_id event config }} {COMPLEXITY_FIELD} }}",
        {"b": str(board_id), "a": app_only},
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

    The request's idempotency key is derived from the subscription and ``salt`` (the caller's
    attempt and what it saw on the board): the client resending it after a timeout does not run it
    twice, and a new attempt (after the URL became reachable) is a new request, not a replay of
    the failed one.
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
    client: MondayClient,
    board_id: str,
    url: str,
    events: Sequence[str] = NEEDED_EVENTS,
    *,
    attempt: str = "",
) -> EnsureResult:
    """Create the board's subscriptions to ``events`` that are missing; list those already there.

    ``attempt`` names this run (e.g. a random id): each run's requests are new ones.
    """
    result = EnsureResult()
    listed = list_webhooks(client, board_id)
    present = {(s.event, json.dumps(s.config, sort_keys=True)): s for s in listed}
    seen = attempt + ":" + ",".join(sorted(s.id for s in listed))  # a webhook deleted since: a new key
    for event in events:
        found = present.get((event, json.dumps(None)))
        if found is not None:
            result.existing.append(found)
        else:
            result.created.append(create_webhook(client, board_id, url, event, salt=seen))
    return result
