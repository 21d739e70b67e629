"""Board webhooks and catching up: ensure, list, re-enable, delete; read what a gap missed.

Webhooks belong to the **token** (``GET /tokens/{token}/webhooks``). Creating one makes Trello
send ``HEAD callbackURL``, which must answer 200 (crmsync's receiver must already run). A
webhook that keeps failing is paused (``active: false``) or deleted by Trello, so
:func:`ensure_webhook` is meant to run again and again (a scheduled healing check): it creates
the missing webhook, re-enables an inactive one, and reports one whose ``consecutiveFailures``
is above 0 (the caller alerts once).

Whatever happened while no webhook delivered (crmsync down, a webhook lost) is read back by
:func:`actions_since`: ``GET /boards/{id}/actions?since=<last action seen>``, newest first, 1,000
a page, paged with ``before=<oldest action of the page>``, returned oldest first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from crmsync.connectors.trello.client import TrelloClient
from crmsync.connectors.trello.errors import gone
from crmsync.connectors.trello.webhooks import ACTION_TYPES, TrelloChange, parse_action
from crmsync.errors import CrmsyncError

#: actions per page (Trello's maximum)
PAGE = 1000
#: the path under the web app's base URL that would receive a connection's deliveries
ROUTE = "/webhooks/{connection}"


@dataclass(frozen=True)
class Webhook:
    id: str
    id_model: str
    callback_url: str
    active: bool
    consecutive_failures: int = 0
    first_consecutive_fail_date: str | None = None
    description: str = ""

    @classmethod
    def from_api(cls, body: dict[str, Any]) -> Webhook:
        return cls(
            id=str(body["id"]),
            id_model=str(body.get("idModel")),
            callback_url=str(body.get("callbackURL")),
            active=bool(body.get("active", True)),
            consecutive_failures=int(body.get("consecutiveFailures") or 0),
            first_consecutive_fail_date=body.get("firstConsecutiveFailDate"),
            description=str(body.get("description") or ""),
        )


@dataclass
class EnsureResult:
    """What :func:`ensure_webhook` found and did."""

    webhook: Webhook | None = None
    created: bool = False
    reenabled: bool = False
    #: the webhook had failed deliveries (``consecutiveFailures > 0``): alert once
    failing: bool = False
    others: list[Webhook] = field(default_factory=list)


def receiver_url(base_url: str, connection: str) -> str:
    return base_url.rstrip("/") + ROUTE.format(connection=connection)


def list_webhooks(client: TrelloClient) -> list[Webhook]:
    """Every webhook of the connection's token."""
    token = client.settings.token.get_secret_value()
    return [Webhook.from_api(w) for w in client.get(f"/tokens/{token}/webhooks") or []]


def ensure_webhook(
    client: TrelloClient, board_id: str, callback_url: str, *, description: str = "crmsync"
) -> EnsureResult:
    """Make sure an active webhook on ``board_id`` delivers to ``callback_url``."""
    result = EnsureResult()
    for hook in list_webhooks(client):
        if hook.id_model == board_id and hook.callback_url == callback_url and result.webhook is None:
            result.webhook = hook
        elif hook.id_model == board_id:
            result.others.append(hook)
    if result.webhook is None:
        made = client.post(
            "/webhooks",
            {"callbackURL": callback_url, "idModel": board_id, "description": description, "active": True},
        )
        result.webhook = Webhook.from_api(made)
        result.created = True
        return result
    result.failing = result.webhook.consecutive_failures > 0
    if not result.webhook.active:
        updated = client.put(f"/webhooks/{result.webhook.id}", {"active": True})
        result.webhook = Webhook.from_api(updated)
        result.reenabled = True
    return result


def delete_webhook(client: TrelloClient, webhook_id: str) -> bool:
    """Delete a webhook; False when it was already gone."""
    try:
        client.delete(f"/webhooks/{webhook_id}")
    except CrmsyncError as exc:
        if gone(exc):
            return False
        raise
    return True


def actions_since(
    client: TrelloClient, board_id: str, since: str | None, *, types: Sequence[str] = ACTION_TYPES
) -> list[dict[str, Any]]:
    """The board's actions after action ``since`` (an id, or a date; None: the last page), oldest first."""
    collected: list[dict[str, Any]] = []
    before: str | None = None
    while True:
        page = client.get(
            f"/boards/{board_id}/actions",
            filter=",".join(types),
            since=since,
            before=before,
            limit=PAGE,
        )
        collected.extend(page or [])
        if not page or len(page) < PAGE or since is None:
            break
        before = str(page[-1]["id"])
    seen: set[str] = set()
    oldest_first: list[dict[str, Any]] = []
    for action in reversed(collected):
        if action["id"] not in seen:
            seen.add(action["id"])
            oldest_first.append(action)
    return oldest_first


def newest_action(client: TrelloClient, board_id: str) -> str | None:
    """The id of the board's newest action (where a catch-up starts when nothing was seen yet)."""
    page = client.get(f"/boards/{board_id}/actions", limit=1, filter="all")
    return str(page[0]["id"]) if page else None


def catch_up(client: TrelloClient, board_id: str, since: str | None) -> list[TrelloChange]:
    """The changes of every action after ``since``, oldest first."""
    changes = (parse_action(a) for a in actions_since(client, board_id, since))
    return [c for c in changes if c is not None]
