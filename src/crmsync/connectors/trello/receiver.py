"""Trello as a :class:`~crmsync.connectors.capabilities.WebhookSource`.

The web app's route ``/webhooks/{connection}`` hands each delivery to the connection's connector;
for Trello this mixin of :class:`.connector.TrelloConnector`:

- :meth:`~TrelloReceiver.authenticate`: the ``X-Trello-Webhook`` signature must verify with the
  connection's ``app_secret`` over the raw body plus the callback URL *as registered* (the one
  ``ensure_subscriptions`` registered, else the URL the delivery came to); nothing to bind;
- :meth:`~TrelloReceiver.handshake`: none in a POST body (Trello checks the URL with a HEAD
  request, which the receiver answers 200);
- :meth:`~TrelloReceiver.parse`: the action as :class:`SourceEvent` values, one per card it
  touches, keyed by ``action.id`` (repeated deliveries carry the same id), with who did it and
  the action's type; what the action says that is no card field (a comment's text, the member —
  by username — or label added) is its ``details``, and what it replaced (an edited comment's
  text, the member or label removed) its ``previous_details``. The card fields it changed carry
  their values before the action as ``previous`` (``data.old``, a move's ``listBefore``; ``{}``
  for a creation), so a history records the action's own before and after, whenever it arrives.
  An action naming a member or label added or removed does not say which the card holds now, so
  the card's ``members`` and ``labels`` are read (one request) for its fields, not for what the
  action set; the fields of an action that changes none (a comment, a checklist item) are empty;
- subscriptions: one board webhook per connection (:mod:`.subscriptions`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from crmsync.connectors.capabilities import (
    Delivery,
    MalformedDelivery,
    Protection,
    Receiver,
    SingleUse,
    SourceEvent,
    Subscription,
    SubscriptionReport,
    WebhookRefused,
)
from crmsync.connectors.trello import subscriptions as subs
from crmsync.connectors.trello import webhooks as hooks
from crmsync.connectors.trello.cards import LABELS, MEMBERS
from crmsync.errors import CrmsyncError, FixTheData

if TYPE_CHECKING:
    from crmsync.connectors.trello.client import TrelloClient
    from crmsync.connectors.trello.settings import TrelloConnection


class TrelloReceiver:
    """The webhook half of a Trello connector (``name``, ``settings``, ``client`` are the connector's)."""

    name: str
    settings: TrelloConnection
    client: TrelloClient

    def protection(self) -> Protection:
        warnings: tuple[str, ...] = ()
        if self.settings.app_secret is None:
            warnings = ("app_secret is not set: no Trello delivery can be verified, so all are refused",)
        return Protection(
            "signed",
            "every delivery's X-Trello-Webhook signature (HMAC-SHA1 with app_secret over the body "
            "and the registered callback URL) is checked",
            warnings,
        )

    def authenticate(self, delivery: Delivery, receiver: Receiver) -> SingleUse | None:
        secret = self.settings.app_secret.get_secret_value() if self.settings.app_secret else None
        header = hooks.signature_header(delivery.headers)
        urls = [u for u in (receiver.callback_url, delivery.url) if u]
        last: hooks.WebhookRefused | None = None
        for url in urls:
            try:
                hooks.verify_signature(secret, delivery.body, url, header)
                return None
            except hooks.WebhookRefused as exc:
                last = exc
        raise WebhookRefused(str(last) if last else "no callback URL to verify the delivery against")

    def handshake(self, body: bytes) -> Mapping[str, Any] | None:
        return None

    def parse(self, body: bytes) -> list[SourceEvent]:
        try:
            change = hooks.parse_delivery(body)
        except hooks.MalformedEvent as exc:
            raise MalformedDelivery(str(exc)) from exc
        if change is None or change.card_id is None or change.board_id is None:
            return []
        deleted = change.kind == "delete"
        fields: dict[str, Any] = {}
        details: dict[str, Any] = {}
        previous_details: dict[str, Any] = {}
        # what the action itself set and replaced (data.old, listBefore/listAfter, the member or
        # label added or removed), the same from a delivery as from a catch-up's read
        previous: dict[str, Any] = {}
        changed: dict[str, Any] | None = None
        if change.kind in _NOT_FIELDS:
            details, previous_details = self._named(change.fields), self._named(change.previous)
            changed = {}
            if change.kind in ("members", "labels"):
                fields = self._card_sets(change.card_id)
        elif deleted:
            changed = {}
        else:
            fields, previous = dict(change.fields), dict(change.previous)
        return [
            SourceEvent(
                object_id=change.board_id,
                record_id=change.card_id,
                delivery_id=change.action_id,
                operation="delete" if deleted else "upsert",
                fields=fields,
                at=change.at,
                created=change.kind == "create",
                gone=deleted and change.action_type == "deleteCard",
                who=self._member_name(change.member_id),
                action=change.action_type,
                details=details,
                previous=previous,
                changed=changed,
                previous_details=previous_details,
            )
        ]

    def _named(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """An action's values beyond the card's fields, a member by its username."""
        return {k: self._member_name(v) if k == "member" else v for k, v in values.items()}

    def _member_name(self, member_id: str | None) -> str | None:
        """The username of a board member (the id when it is not one of the board's)."""
        info = getattr(self, "info", None)
        if member_id is None or info is None:
            return member_id
        try:
            return str(info().members.get(member_id) or member_id)
        except CrmsyncError:
            return member_id

    def _card_sets(self, card_id: str) -> dict[str, Any]:
        """The card's members and labels now (empty when it cannot be read: it is gone)."""
        read = getattr(self, "read_records", None)
        if read is None:
            return {}
        try:
            for record in read("Card", [card_id]):
                if record.deleted:
                    return {}
                return {name: record.fields.get(name) for name in (LABELS, MEMBERS, "idLabels", "idMembers")}
        except FixTheData:
            return {}
        return {}

    def receiver_url(self, base_url: str, secret: str | None) -> str:
        return subs.receiver_url(base_url, self.name)

    def _board_of(self, object_id: str) -> str:
        resolve = getattr(self, "object_id", None)
        return str(resolve(object_id)) if resolve is not None else object_id

    def ensure_subscriptions(self, object_id: str, url: str, *, attempt: str) -> SubscriptionReport:
        board = self._board_of(object_id)
        result = subs.ensure_webhook(self.client, board, url, description=f"crmsync {self.name}")
        report = SubscriptionReport()
        if result.webhook is not None:
            (report.created if result.created else report.existing).append(_generic(result.webhook))
        return report

    def list_subscriptions(self, object_id: str, *, signed_only: bool = False) -> list[Subscription]:
        board = self._board_of(object_id)
        return [_generic(w) for w in subs.list_webhooks(self.client) if w.id_model == board]


#: kinds of actions whose values are no card field: they go to the event's details
_NOT_FIELDS = ("members", "labels", "comment", "attachment", "checklist", "list")


def _generic(hook: subs.Webhook) -> Subscription:
    return Subscription(
        id=hook.id,
        object_id=hook.id_model,
        event="all actions",
        config={
            "callbackURL": hook.callback_url,
            "active": hook.active,
            "consecutiveFailures": hook.consecutive_failures,
        },
    )
