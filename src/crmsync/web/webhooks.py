"""``POST /webhooks/{connection}[/{secret}]``: a vendor tells crmsync what changed.

One route for every connection whose connector is a
:class:`~crmsync.connectors.capabilities.WebhookSource` (``/webhooks/monday/{connection}[/{secret}]``
answers too: monday's webhooks are registered there). The connector knows its vendor; this module
knows the order of things, the same for every vendor:

0. a ``HEAD`` request (Trello checks a callback URL so when a webhook is created) is answered
   200 for a connection that receives webhooks, 404 otherwise; it carries nothing to store;
1. **authenticate** before the body is parsed (``WebhookSource.authenticate``: for monday a
   signed JWT — checked with ``signing_secret``, naming this endpoint or the registered URL as its
   audience, unexpired — or the connection's secret in the URL, compared in constant time); a
   signed delivery's token is bound to the first body it came with (used once). A refused
   delivery is answered 401, counted (``crmsync status``, ``/metrics``), alerted once and stores
   nothing;
2. **parse**, bounded in size and depth; anything malformed is a 400; the vendor's URL check
   (``handshake``) is answered;
3. **queue** each event (:func:`crmsync.engine.events.queue_event`, as a catch-up does) as one
   change row per flow that reads or writes that object, de-duplicated
   on the vendor's event id — written before the reply, so an acknowledged event is never lost —
   with the event's metadata (when, who, action, delivery id: ``NewChange.meta``). A
   field's value older (by the event's time) than one already received for it is dropped, so
   deliveries arriving out of order never roll a value back (an event naming its action is still
   queued, without those values, for the targets keeping a history); one record's deliveries are compared
   and queued one at a time in this process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from crmsync.alerts import webhook_ok, webhook_problem
from crmsync.connectors.capabilities import (
    Delivery,
    MalformedDelivery,
    Receiver,
    SourceEvent,
    WebhookRefused,
    WebhookSource,
    offers,
    require,
)
from crmsync.engine.events import queue_event
from crmsync.engine.runtime import Runtime
from crmsync.store import webhooks as receivers
from crmsync.web.errors import ApiError
from crmsync.web.ingest import read_body

log = logging.getLogger(__name__)


class Webhooks:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self._troubled: set[str] = set()  # connections with a refused delivery (alert open)
        self._secrets: dict[str, receivers.Receiver] = {}
        # one record's deliveries are compared and queued one at a time in this process, so the
        # newer of two simultaneous deliveries is also the later change row
        self._item_locks = [threading.Lock() for _ in range(64)]

    def _source(self, connection: str) -> WebhookSource:
        conn = self.rt.config.connections.get(connection)
        if conn is None or not offers(self.rt.connector_type(connection), WebhookSource):
            raise ApiError(404, "unknown_connection", f"no connection {connection!r} receives webhooks")
        return require(self.rt.connector(connection), WebhookSource)

    async def __call__(self, request: Request) -> Response:
        connection = request.path_params["connection"]
        source = await anyio.to_thread.run_sync(self._source, connection)
        if request.method == "HEAD":  # the vendor checks the callback URL
            return Response(status_code=200)
        body = await read_body(request, self.rt.max_body_bytes)
        delivery = Delivery(
            headers=dict(request.headers),
            body=body,
            url=str(request.url.replace(query="")),
            path_secret=request.path_params.get("secret"),
        )
        try:
            await self._authenticate(source, connection, delivery)
        except WebhookRefused as exc:
            await self._refused(connection, str(exc))
            raise ApiError(401, "bad_signature", str(exc)) from exc
        if connection in self._troubled:
            self._troubled.discard(connection)
            await anyio.to_thread.run_sync(webhook_ok, self.rt.alerter, connection)
        try:
            # parsing is bounded, but a megabyte still takes a moment: off the event loop
            challenge, events = await anyio.to_thread.run_sync(self._parse, source, body)
        except MalformedDelivery as exc:
            raise ApiError(400, "malformed_event", str(exc)) from exc
        if challenge is not None:
            return JSONResponse(dict(challenge))
        if not events:
            return JSONResponse({"ignored": True})
        result: dict[str, Any] = {"accepted": 0, "duplicates": 0}
        for event in events:
            one = await anyio.to_thread.run_sync(self._enqueue, connection, event)
            if len(events) == 1:
                return JSONResponse(one)
            result["accepted"] += one.get("accepted", 0)
            result["duplicates"] += one.get("duplicates", 0)
        return JSONResponse(result)

    @staticmethod
    def _parse(source: WebhookSource, body: bytes) -> tuple[Mapping[str, Any] | None, list[SourceEvent]]:
        challenge = source.handshake(body)
        return (challenge, []) if challenge is not None else (None, source.parse(body))

    async def _authenticate(self, source: WebhookSource, connection: str, delivery: Delivery) -> None:
        held = await self._receiver(connection)
        token = source.authenticate(delivery, Receiver(held.url_secret, held.callback_url))
        if token is None:
            return
        fresh = await anyio.to_thread.run_sync(
            receivers.use_token, self.rt.store, token.token_digest, token.body_digest, token.expires
        )
        if not fresh:
            raise WebhookRefused("the delivery's token was already used for another delivery")

    async def _receiver(self, connection: str) -> receivers.Receiver:
        held = self._secrets.get(connection)
        if held is None or held.callback_url is None:  # `webhooks ensure` may register a URL later
            held = await anyio.to_thread.run_sync(receivers.receiver, self.rt.store, connection)
            self._secrets[connection] = held
        return held

    async def _refused(self, connection: str, reason: str) -> None:
        log.warning("webhook on %s refused: %s", connection, reason)
        self.rt.metrics.webhook_refused(connection)
        self._troubled.add(connection)

        def record() -> None:
            receivers.record_refusal(self.rt.store, connection, reason)
            webhook_problem(self.rt.alerter, connection, f"a delivery was refused: {reason}")

        await anyio.to_thread.run_sync(record)

    def _enqueue(self, connection: str, event: SourceEvent) -> dict[str, Any]:
        with self._item_locks[hash((connection, event.record_id)) % len(self._item_locks)]:
            return self._enqueue_in_order(connection, event)

    def _enqueue_in_order(self, connection: str, event: SourceEvent) -> dict[str, Any]:
        return queue_event(self.rt, connection, event)
