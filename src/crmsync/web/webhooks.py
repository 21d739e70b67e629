"""``POST /webhooks/monday/{connection}[/{secret}]``: Monday.com tells crmsync what changed on a board.

A delivery is authenticated before its body is parsed, in one of two ways (``crmsync webhooks
ensure`` registers the URL that fits the connection, and ``crmsync check --connect`` says which):

- **signed** (webhooks created with an app's token, ``/webhooks/monday/{connection}``): the
  ``Authorization`` JWT must verify with the connection's ``signing_secret``, name this endpoint's
  URL as its audience, not be expired, and not have come before with another body (monday's
  signature does not cover the body: a captured token is bound to the first body it came with);
- **secret URL** (webhooks created with a personal token, which monday does not sign,
  ``/webhooks/monday/{connection}/{secret}``): the secret must be the connection's, compared in
  constant time.

A refused delivery is answered 401, counted (``crmsync status``, ``/metrics``), alerted once and
stores nothing. Then the body is parsed, bounded in size and depth; anything malformed is a 400.
The challenge handshake is answered; every other event becomes one change row per flow that reads
that board, de-duplicated on monday's ``triggerUuid`` — written before the reply, so an
acknowledged event is never lost. A field's value older (by monday's ``changedAt``) than one
already received for it is dropped, so deliveries arriving out of order never roll a value back.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import replace
from typing import Any, Literal

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from crmsync.alerts import webhook_ok, webhook_problem
from crmsync.connectors.monday.webhooks import (
    MalformedEvent,
    MondayEvent,
    WebhookRefused,
    bearer,
    challenge_reply,
    digest,
    parse_event,
    secret_matches,
    verify_token,
)
from crmsync.engine.queue import NewChange
from crmsync.engine.runtime import Runtime
from crmsync.store import webhooks as receivers
from crmsync.web.errors import ApiError
from crmsync.web.ingest import read_body

log = logging.getLogger(__name__)


def changes_for(runtime: Runtime, connection: str, event: MondayEvent) -> list[NewChange]:
    """One change per flow that reads or writes this board."""
    operation: Literal["upsert", "delete"] = "delete" if event.kind in ("delete", "archive") else "upsert"
    fields = dict(event.fields)
    if event.group_id is not None and event.kind == "move":
        fields.setdefault("group", event.group_id)
    changes = []
    for flow in runtime.flows.values():
        if connection not in (flow.source, flow.target):
            continue
        board = runtime.board_of(flow, connection)
        if board != event.board_id:
            continue
        changes.append(
            NewChange(
                source=connection,
                flow=flow.name,
                record_key=event.item_id,
                operation=operation,
                fields={**fields, "_at": event.at.isoformat() if event.at else None},
                delivery_id=f"{event.trigger_uuid}:{flow.name}",
            )
        )
    return changes


def _audiences(request: Request, registered: str | None) -> list[str]:
    """The URLs a signed delivery may name as its audience: the one registered with monday (which
    may be a proxy's) and this endpoint's URL as requested."""
    here = str(request.url.replace(query=""))
    return [u for u in dict.fromkeys([registered, here]) if u]


class MondayWebhooks:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self._troubled: set[str] = set()  # connections with a refused delivery (alert open)
        self._secrets: dict[str, receivers.Receiver] = {}
        # one item's deliveries are compared and queued one at a time in this process, so the newer
        # of two simultaneous deliveries is also the later change row
        self._item_locks = [threading.Lock() for _ in range(64)]

    async def __call__(self, request: Request) -> Response:
        connection = request.path_params["connection"]
        conn = self.rt.config.connections.get(connection)
        if conn is None or conn.type != "monday":
            raise ApiError(404, "unknown_connection", f"no monday connection {connection!r}")
        body = await read_body(request, self.rt.max_body_bytes)
        try:
            await self._authenticate(request, connection, body)
        except WebhookRefused as exc:
            await self._refused(connection, str(exc))
            raise ApiError(401, "bad_signature", str(exc)) from exc
        if connection in self._troubled:
            self._troubled.discard(connection)
            await anyio.to_thread.run_sync(webhook_ok, self.rt.alerter, connection)
        try:
            # parsing is bounded, but a megabyte still takes a moment: off the event loop
            challenge, event = await anyio.to_thread.run_sync(self._parse, body)
        except MalformedEvent as exc:
            raise ApiError(400, "malformed_event", str(exc)) from exc
        if challenge is not None:
            return JSONResponse(challenge)
        if event is None:
            return JSONResponse({"ignored": True})
        result = await anyio.to_thread.run_sync(self._enqueue, connection, event)
        return JSONResponse(result)

    @staticmethod
    def _parse(body: bytes) -> tuple[dict[str, Any] | None, MondayEvent | None]:
        challenge = challenge_reply(body)
        return (challenge, None) if challenge is not None else (None, parse_event(body))

    async def _authenticate(self, request: Request, connection: str, body: bytes) -> None:
        conn: Any = self.rt.config.connections[connection]
        given = request.path_params.get("secret")
        if given is not None:  # the secret URL of personal-token webhooks
            held = await self._receiver(connection)
            if not secret_matches(given, held.url_secret):
                raise WebhookRefused("the callback URL's secret is not this connection's")
            return
        secret = conn.signing_secret.get_secret_value() if conn.signing_secret else None
        if not secret:
            raise WebhookRefused(
                "no signing_secret is configured for this connection, so deliveries must come to the "
                "callback URL with a secret that `crmsync webhooks ensure` registers"
            )
        held = await self._receiver(connection)
        token = bearer(request.headers)
        claims = verify_token(token, secret, _audiences(request, held.callback_url))
        expires = dt.datetime.fromtimestamp(float(claims["exp"]), dt.UTC)
        fresh = await anyio.to_thread.run_sync(
            receivers.use_token, self.rt.store, digest(token), digest(body), expires
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
        log.warning("monday webhook on %s refused: %s", connection, reason)
        self.rt.metrics.webhook_refused(connection)
        self._troubled.add(connection)

        def record() -> None:
            receivers.record_refusal(self.rt.store, connection, reason)
            webhook_problem(self.rt.alerter, connection, f"a delivery was refused: {reason}")

        await anyio.to_thread.run_sync(record)

    def _enqueue(self, connection: str, event: MondayEvent) -> dict[str, Any]:
        with self._item_locks[hash((connection, event.item_id)) % len(self._item_locks)]:
            return self._enqueue_in_order(connection, event)

    def _enqueue_in_order(self, connection: str, event: MondayEvent) -> dict[str, Any]:
        if event.kind == "delete":
            receivers.forget_item(self.rt.store, connection, event.item_id)
        elif event.at is not None and event.fields:
            times = dict.fromkeys(event.fields, event.at)
            newer = receivers.newer_fields(self.rt.store, connection, event.item_id, times)
            stale = set(event.fields) - newer
            if stale:
                log.info(
                    "monday item %s: older values of %s than already received dropped",
                    event.item_id,
                    ", ".join(sorted(stale)),
                )
                if not newer and event.kind != "create":
                    return {"accepted": 0, "duplicates": 0, "stale": sorted(stale)}
                event = _without(event, stale)
        accepted = duplicates = 0
        for change in changes_for(self.rt, connection, event):  # usually one flow reads a board
            result = self.rt.queue.enqueue([change])
            self.rt.metrics.received(change.flow, result.accepted, result.duplicates)
            accepted += result.accepted
            duplicates += result.duplicates
        return {"accepted": accepted, "duplicates": duplicates}


def _without(event: MondayEvent, stale: set[str]) -> MondayEvent:
    return replace(
        event,
        fields={k: v for k, v in event.fields.items() if k not in stale},
        previous={k: v for k, v in event.previous.items() if k not in stale},
    )
