"""monday.com as a :class:`~crmsync.connectors.capabilities.WebhookSource`.

The web app's one route ``/webhooks/{connection}[/{secret}]`` hands each delivery to the
connection's connector; for monday this mixin of :class:`.connector.MondayConnector`:

- :meth:`~MondayReceiver.authenticate`: a *secret URL* delivery (webhooks made with a personal
  token) must carry the connection's secret, compared in constant time; a *signed* one (made with
  ``app_token``) must carry a JWT that verifies with ``signing_secret``, names the registered
  callback URL or this endpoint as its audience and is unexpired — its token is returned, to be
  bound to its first body (monday's signature does not cover the body);
- :meth:`~MondayReceiver.handshake` answers monday's URL challenge;
- :meth:`~MondayReceiver.parse` turns an event into :class:`SourceEvent` values (:mod:`.webhooks`);
- subscriptions are made and listed with ``app_token`` when there is one (:mod:`.subscriptions`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from crmsync.connectors.capabilities import (
    Delivery,
    Protection,
    Receiver,
    SingleUse,
    SourceEvent,
    Subscription,
    SubscriptionReport,
    WebhookRefused,
)
from crmsync.connectors.monday import subscriptions as subs
from crmsync.connectors.monday.client import MondayClient
from crmsync.connectors.monday.webhooks import (
    bearer,
    challenge_reply,
    digest,
    parse_event,
    secret_matches,
    verify_token,
)

if TYPE_CHECKING:
    from crmsync.connectors.monday.settings import MondaySettings


class MondayReceiver:
    """The webhook half of a monday connector (``name``, ``settings`` and ``board_id`` are the
    connector's)."""

    name: str
    settings: MondaySettings
    client: MondayClient
    _webhook_client: MondayClient | None = None

    def board_id(self, name: str) -> str:
        raise NotImplementedError

    # -- receiving ---------------------------------------------------------------------------------
    def protection(self) -> Protection:
        auth = subs.webhook_auth(self.settings.app_token, self.settings.signing_secret)
        return Protection(auth.protection, auth.describe(), auth.warnings)

    def authenticate(self, delivery: Delivery, receiver: Receiver) -> SingleUse | None:
        if delivery.path_secret is not None:  # the secret URL of personal-token webhooks
            if not secret_matches(delivery.path_secret, receiver.url_secret):
                raise WebhookRefused("the callback URL's secret is not this connection's")
            return None
        secret = self.settings.signing_secret
        if not secret:
            raise WebhookRefused(
                "no signing_secret is configured for this connection, so deliveries must come to the "
                "callback URL with a secret that `crmsync webhooks ensure` registers"
            )
        token = bearer(delivery.headers)
        audiences = [u for u in dict.fromkeys([receiver.callback_url, delivery.url]) if u]
        claims = verify_token(token, secret, audiences)
        expires = dt.datetime.fromtimestamp(float(claims["exp"]), dt.UTC)
        return SingleUse(digest(token), digest(delivery.body), expires)

    def handshake(self, body: bytes) -> Mapping[str, Any] | None:
        return challenge_reply(body)

    def parse(self, body: bytes) -> list[SourceEvent]:
        event = parse_event(body)
        if event is None:
            return []
        fields = dict(event.fields)
        if event.group_id is not None and event.kind == "move":
            fields.setdefault("group", event.group_id)
        return [
            SourceEvent(
                object_id=event.board_id,
                record_id=event.item_id,
                delivery_id=event.trigger_uuid,
                operation="delete" if event.kind in ("delete", "archive") else "upsert",
                fields=fields,
                at=event.at,
                created=event.kind == "create",
                gone=event.kind == "delete",
            )
        ]

    # -- subscriptions -----------------------------------------------------------------------------
    def receiver_url(self, base_url: str, secret: str | None) -> str:
        return subs.receiver_url(base_url, self.name, secret)

    def _subscriber(self) -> MondayClient:
        """The client that makes and lists webhooks: with ``app_token`` when set (monday signs the
        deliveries of webhooks an app's token creates). With the connection's own token it spends
        from the connector's complexity budget (shared through the store once attached); an app's
        token has a budget of its own."""
        if self._webhook_client is None:
            token = self.settings.app_token or self.settings.token
            pacer = self.client.pacer if token == self.settings.token else None
            self._webhook_client = MondayClient(dataclasses.replace(self.settings, token=token), pacer=pacer)
        return self._webhook_client

    def ensure_subscriptions(self, object_id: str, url: str, *, attempt: str) -> SubscriptionReport:
        done = subs.ensure_webhooks(self._subscriber(), self.board_id(object_id), url, attempt=attempt)
        return SubscriptionReport(
            created=[_generic(s) for s in done.created], existing=[_generic(s) for s in done.existing]
        )

    def list_subscriptions(self, object_id: str, *, signed_only: bool = False) -> list[Subscription]:
        board = self.board_id(object_id)
        return [_generic(s) for s in subs.list_webhooks(self._subscriber(), board, app_only=signed_only)]

    def close_receiver(self) -> None:
        if self._webhook_client is not None:
            self._webhook_client.close()
            self._webhook_client = None


def _generic(sub: subs.Subscription) -> Subscription:
    return Subscription(sub.id, sub.board_id, sub.event, sub.config)
