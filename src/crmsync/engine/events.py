"""Events a source reports (:class:`~crmsync.connectors.capabilities.SourceEvent`) into the queue,
the same way whether a webhook delivered them or a catch-up read them back.

- :func:`queue_event`: one change row per flow that reads or writes the event's object,
  de-duplicated on the vendor's event id (``<delivery id>:<flow>``), with the event's metadata; a
  field's value older (by the event's time) than one already received is dropped, so events
  arriving out of order never roll a value back (an event naming its action is still queued,
  without those values, for the targets keeping a history, and with what the event itself says it
  changed, before and after, when its source says: a history records the event's own values).
- :class:`EventCatchUp`: for a webhook source that :class:`~crmsync.connectors.capabilities.CatchUp`,
  reads each object's events since a cursor kept in the store (``watermarks``:
  ``(connection, "webhook-catch-up:" + object id)``) and queues them with :func:`queue_event`, so an
  event a webhook did deliver is a duplicate and dropped, and one it missed (crmsync was down, a
  delivery or the webhook was lost) is synced now, one history row per event. The first pass
  only records where listening starts. It runs when a process starts and on every reconcile.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from crmsync.connectors.capabilities import CatchUp, SourceEvent, require
from crmsync.engine.queue import EnqueueResult, NewChange
from crmsync.store import watermarks
from crmsync.store import webhooks as receivers

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from crmsync.engine.runtime import Runtime

log = logging.getLogger(__name__)

#: the watermarks row of an object's catch-up cursor: (connection, CURSOR + object id)
CURSOR = "webhook-catch-up:"


def flows_of(runtime: Runtime, connection: str, object_id: str) -> list[str]:
    """The flows that read or write this object of ``connection`` (naming its board may ask the
    vendor once: never inside a store transaction)."""
    return [
        flow.name
        for flow in runtime.flows.values()
        if connection in (flow.source, flow.target) and runtime.board_of(flow, connection) == object_id
    ]


def changes_for(
    runtime: Runtime, connection: str, event: SourceEvent, flows: Sequence[str] | None = None
) -> list[NewChange]:
    """One change per flow that reads or writes this object (``flows``: those, found already)."""
    changes = []
    for name in flows_of(runtime, connection, event.object_id) if flows is None else flows:
        flow = runtime.flows[name]
        changes.append(
            NewChange(
                source=connection,
                flow=flow.name,
                record_key=event.record_id,
                operation=event.operation,
                fields={**event.fields, "_at": event.at.isoformat() if event.at else None},
                delivery_id=f"{event.delivery_id}:{flow.name}",
                meta=event.meta(),
            )
        )
    return changes


def queue_event(runtime: Runtime, connection: str, event: SourceEvent) -> dict[str, Any]:
    """Queue one event: ``{"accepted": n, "duplicates": n}`` (and ``"stale"``: the fields whose
    values were older than ones already received, when the whole event was dropped for it).

    One transaction holds it all (the field times, every flow's change): a delivery waits for the
    store's write lock once, not once per step."""
    outcome: dict[str, Any] = {}
    flows = flows_of(runtime, connection, event.object_id)  # before the transaction: it may ask the vendor

    def work(conn: Connection) -> list[tuple[NewChange, EnqueueResult]]:
        held = event
        outcome.clear()
        if held.gone:
            receivers.forget_item(conn, connection, held.record_id)
        elif held.at is not None and held.fields:
            times = dict.fromkeys(held.fields, held.at)
            newer = receivers.newer_fields(conn, connection, held.record_id, times)
            stale = set(held.fields) - newer
            if stale:
                outcome["stale"] = sorted(stale)
                if not newer and not held.created and not held.action:
                    outcome["dropped"] = True
                    return []
                fresh = {k: v for k, v in held.fields.items() if k not in stale}
                # what the event set stays its own (its history), only the values written are dropped
                held = replace(held, fields=fresh, changed=held.meta().changed)
        changes = changes_for(runtime, connection, held, flows)  # usually one flow reads an object
        results = runtime.queue.enqueue_groups([[change] for change in changes], conn=conn)
        return list(zip(changes, results, strict=True))

    queued = runtime.store.run(work)
    if "stale" in outcome:
        log.info(
            "record %s of %s: older values of %s than already received dropped",
            event.record_id,
            connection,
            ", ".join(outcome["stale"]),
        )
        if outcome.get("dropped"):
            return {"accepted": 0, "duplicates": 0, "stale": outcome["stale"]}
    accepted = duplicates = 0
    for change, result in queued:
        runtime.metrics.received(change.flow, result.accepted, result.duplicates)
        accepted += result.accepted
        duplicates += result.duplicates
    if accepted:
        runtime.queue.wake()
    return {"accepted": accepted, "duplicates": duplicates}


class EventCatchUp:
    """Reads back the events of the objects the flows take from (or write to) ``connection``."""

    def __init__(self, runtime: Runtime, connection: str, flows: Sequence[str]) -> None:
        self.rt = runtime
        self.connection = connection
        self.flows = list(flows)

    def objects(self) -> list[str]:
        found: list[str] = []
        for name in self.flows:
            board = self.rt.board_of(self.rt.flows[name], self.connection)
            if board is not None and board not in found:
                found.append(board)
        return found

    def catch_up_once(self) -> int:
        """One pass over every object; how many changes were queued (duplicates not counted)."""
        source = require(self.rt.connector(self.connection), CatchUp, "catching up")
        queued = 0
        for object_id in self.objects():
            cursor = watermarks.get(self.rt.store, self.connection, CURSOR + object_id)
            events, after = source.events_since(object_id, cursor)
            for event in self.missed(events):
                queued += int(queue_event(self.rt, self.connection, event)["accepted"])
            if after is not None and after != cursor:  # moved only once everything read is queued
                watermarks.put(self.rt.store, self.connection, CURSOR + object_id, after)
            if events:
                log.info(
                    "%s %s: %d events since %s read back, %d changes queued",
                    self.connection,
                    object_id,
                    len(events),
                    cursor,
                    queued,
                )
        return queued

    def missed(self, events: Sequence[SourceEvent]) -> list[SourceEvent]:
        """The events not queued yet. Most were delivered by the webhook already: one read of the
        queue finds them all (by their changes' delivery ids), so a catch-up after a busy spell
        does not redo each delivered event's work — field times, a transaction per change — while
        webhooks keep arriving. An event queued already would be dropped as a duplicate anyway."""
        keyed = [(event, [(c.source, c.delivery_id) for c in changes_for(self.rt, self.connection, event)])
                 for event in events]  # fmt: skip
        queued = self.rt.queue.delivered({(s, d) for _, keys in keyed for s, d in keys if d is not None})
        return [event for event, keys in keyed if not keys or any(k not in queued for k in keys)]
