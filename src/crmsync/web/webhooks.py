"""``POST /webhooks/monday/{connection}``: Monday.com tells crmsync what changed on a board.

The challenge handshake is answered; when the connection has a signing secret, a delivery whose
JWT fails the check is refused (401) and nothing is stored; every other event becomes one change
row per flow that reads that board, de-duplicated on monday's ``triggerUuid`` — written before the
reply, so an acknowledged event is never lost.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from crmsync.alerts import webhook_ok, webhook_problem
from crmsync.connectors.monday.webhooks import (
    MalformedEvent,
    MondayEvent,
    WebhookRefused,
    challenge_reply,
    parse_event,
    verify_request,
)
from crmsync.engine.queue import NewChange
from crmsync.engine.runtime import Runtime
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


class MondayWebhooks:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self._troubled: set[str] = set()  # connections with a refused delivery (alert open)

    async def __call__(self, request: Request) -> Response:
        connection = request.path_params["connection"]
        conn = self.rt.config.connections.get(connection)
        if conn is None or conn.type != "monday":
            raise ApiError(404, "unknown_connection", f"no monday connection {connection!r}")
        body = await read_body(request, self.rt.max_body_bytes)
        challenge = challenge_reply(body)
        if challenge is not None:
            return JSONResponse(challenge)
        secret = conn.signing_secret.get_secret_value() if conn.signing_secret else None
        try:
            verify_request(dict(request.headers), body, secret)
        except WebhookRefused as exc:
            log.warning("monday webhook on %s refused: %s", connection, exc)
            self._troubled.add(connection)
            await anyio.to_thread.run_sync(
                webhook_problem, self.rt.alerter, connection, f"a delivery was refused: {exc}"
            )
            raise ApiError(401, "bad_signature", str(exc)) from exc
        if connection in self._troubled:
            self._troubled.discard(connection)
            await anyio.to_thread.run_sync(webhook_ok, self.rt.alerter, connection)
        try:
            event = parse_event(body)
        except MalformedEvent as exc:
            raise ApiError(400, "malformed_event", str(exc)) from exc
        if event is None:
            return JSONResponse({"ignored": True})
        result = await anyio.to_thread.run_sync(self._enqueue, connection, event)
        return JSONResponse(result)

    def _enqueue(self, connection: str, event: MondayEvent) -> dict[str, Any]:
        accepted = duplicates = 0
        for change in changes_for(self.rt, connection, event):  # usually one flow reads a board
            result = self.rt.queue.enqueue([change])
            self.rt.metrics.received(change.flow, result.accepted, result.duplicates)
            accepted += result.accepted
            duplicates += result.duplicates
        return {"accepted": accepted, "duplicates": duplicates}
