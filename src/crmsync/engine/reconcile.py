"""Reconcile a webhook-fed board: catch the changes whose webhook never arrived.

A source that reads its events back (Trello's board actions) is caught up event by event from a
cursor (:mod:`crmsync.engine.events`), when the process starts and on every pass; the others
(a Monday.com board) are read by their records' state, as follows.

Webhooks can be lost (monday gives up after its retries; a receiver was down longer than that).
Every ``interval`` the reconciler reads the items updated since its watermark and queues them as
changes of the board — one read for the whole board, not one per item. Changes crmsync already
has are dropped as no news by the shadow comparison (:mod:`crmsync.engine.twoway`), so a
reconcile costs reads, never duplicate writes.

The first pass (no watermark yet) reads the whole board, so a delivery lost at any time before
it — before crmsync ran, in its first minute — is caught. A flow with ``initial_sync: false``
leaves what happened before crmsync first ran it alone: its first pass reads from that moment
(noted once per board, when the first reconciler starts — or, when the vendor or the store fails
just then, on its first pass that works: a process starting during an outage does not stop).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from crmsync.connectors.capabilities import CatchUp, PolledSource, require
from crmsync.connectors.stamps import try_stamp as parse_stamp
from crmsync.engine.events import EventCatchUp
from crmsync.engine.queue import NewChange
from crmsync.errors import CrmsyncError
from crmsync.store import shadow, watermarks

if TYPE_CHECKING:
    from crmsync.engine.runtime import Runtime

log = logging.getLogger(__name__)


class BoardReconciler:
    """Reads the boards that two-way flows take from ``connection`` and queues what changed."""

    def __init__(self, runtime: Runtime, connection: str, flows: Sequence[str]) -> None:
        self.rt = runtime
        self.connection = connection
        self.flows = list(flows)
        self._noted = False
        try:
            self._note_start()
        except (CrmsyncError, SQLAlchemyError) as exc:  # a process starting while the vendor or the
            # store fails must start all the same: the first pass that works notes it
            log.warning("could not note when crmsync started listening to %s yet: %s", connection, exc)

    def _note_start(self) -> None:
        """Note when crmsync first listened to each board (kept across restarts)."""
        if self._noted:
            return
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for name in self.flows:
            board = self.rt.board_of(self.rt.flows[name], self.connection)
            if (
                board is not None
                and watermarks.get(self.rt.store, self.connection, f"listening:{board}") is None
            ):
                watermarks.put(self.rt.store, self.connection, f"listening:{board}", now)
        self._noted = True

    def catch_up(self) -> int:
        """When the process starts: the events missed while crmsync was down, for a source that
        reads its events back (:class:`~crmsync.connectors.capabilities.CatchUp`; others wait for
        the first reconcile); how many changes were queued."""
        self._note_start()
        if not isinstance(self.rt.connector(self.connection), CatchUp):
            return 0
        return EventCatchUp(self.rt, self.connection, self.flows).catch_up_once()

    def reconcile_once(self) -> int:
        """One pass over every board; returns how many changes were queued (before de-duplication).
        A source that reads its events back is caught up event by event (one change, and one
        history row, per missed event; deletions included) instead of by its records' state."""
        self._note_start()
        if isinstance(self.rt.connector(self.connection), CatchUp):
            return EventCatchUp(self.rt, self.connection, self.flows).catch_up_once()
        connector = require(self.rt.connector(self.connection), PolledSource, "reconciling")
        queued = 0
        for name in self.flows:
            flow = self.rt.flows[name]
            board = self.rt.board_of(flow, self.connection)
            if board is None:
                continue
            mark = f"reconcile:{board}"
            since = watermarks.get(self.rt.store, self.connection, mark)
            if since is None and not flow.flow.initial_sync:
                since = watermarks.get(self.rt.store, self.connection, f"listening:{board}")
            batch = connector.read_changes(board, since)
            heard = self._last_heard(name, [r.id for r in batch.records])
            fresh = [
                r
                for r in batch.records
                if r.id not in heard or (parse_stamp(r.modified) or heard[r.id]) > heard[r.id]
            ]
            changes = [
                NewChange(
                    source=self.connection,
                    flow=name,
                    record_key=record.id,
                    operation="delete" if record.deleted else "upsert",
                    fields={**record.fields, "_at": record.modified},
                    delivery_id=f"reconcile:{record.id}:{record.modified}",
                )
                for record in fresh
            ]
            if changes:
                result = self.rt.queue.enqueue(changes)
                queued += result.accepted
            watermarks.put(self.rt.store, self.connection, mark, batch.watermark)
        return queued

    def _last_heard(self, flow_name: str, ids: list[str]) -> dict[str, datetime]:
        """When crmsync last heard of each item (the newest time in its shadow): an item not
        updated since was not missed, and reading it again must not roll a newer value back."""
        flow = self.rt.flows[flow_name]
        known = shadow.get_shadows(self.rt.store, self.connection, f"{flow.name}:source", ids)
        heard: dict[str, datetime] = {}
        for item, fields in known.items():
            parsed = [parse_stamp(e[1]) for e in fields.values() if isinstance(e, list) and len(e) > 1]
            stamps = [stamp for stamp in parsed if stamp is not None]
            if stamps:
                heard[item] = max(stamps)
        return heard

    def run(self, stop: threading.Event, interval: float) -> None:
        while not stop.wait(interval):
            try:
                self.reconcile_once()
            except CrmsyncError as exc:
                log.warning("reconciling %s failed, trying again later: %s", self.connection, exc)
            except Exception:  # the store may be down: the watermark did not move
                log.exception("reconciling %s failed", self.connection)
