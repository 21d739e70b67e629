"""Pollers: the trigger that turns a polled source's changes into change rows, for any connector.

The process runs one poller per connection that is a
:class:`~crmsync.connectors.capabilities.PolledSource` and receives no webhooks (one process at a
time, under a store lease). :func:`poller_for` builds it:

- a connector that runs its own cycle (:class:`~crmsync.connectors.polling.PollsItself`:
  Salesforce reads several objects per Composite call and sweeps back for late commits) builds it,
  and hands its changes to the queue through :class:`QueueSink`;
- any other gets :class:`WatermarkPoller`: per object, ``read_changes(object, watermark, fields)``;
  each record's change queued for every flow reading that object, and the new watermark stored in
  the same transaction (a crash re-reads, never skips). With no watermark yet, the first cycle
  reads every record (as a reconcile's first pass does). Delivery ids are
  ``poll:<id>:<stamp>[:<flow>]``, so a record read again unchanged is dropped by the queue.

Echo suppression is not done here: the worker compares each change with the shadow state.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import cast

from sqlalchemy.engine import Connection

from crmsync.connectors.base import Connector
from crmsync.connectors.capabilities import PolledSource
from crmsync.connectors.polling import (
    ChangePoller,
    ChangeSink,
    Enqueued,
    PolledChange,
    PollResult,
    PollsItself,
    PollTarget,
)
from crmsync.engine.queue import ChangeQueue, NewChange
from crmsync.errors import RetryLater
from crmsync.store import watermarks
from crmsync.store.db import Store

__all__ = ["PollResult", "PollTarget", "QueueSink", "WatermarkPoller", "poller_for"]

log = logging.getLogger(__name__)


class QueueSink:
    """The change queue as a poller's sink: polled changes stored in the poller's transaction."""

    def __init__(self, queue: ChangeQueue) -> None:
        self.queue = queue

    def enqueue(self, changes: Sequence[PolledChange], *, conn: Connection) -> Enqueued:
        return self.queue.enqueue(
            [
                NewChange(c.source, c.flow, c.record_key, c.operation, c.fields, c.delivery_id)
                for c in changes
            ],
            conn=conn,
        )


def poller_for(
    connector: Connector, targets: Sequence[PollTarget], queue: ChangeQueue, store: Store
) -> ChangePoller:
    """The poller of ``connector``'s connection for ``targets`` (its own, or the generic one)."""
    sink = QueueSink(queue)
    if isinstance(connector, PollsItself):
        return connector.change_poller(targets, sink, store)
    if not isinstance(connector, PolledSource):
        raise TypeError(f"connection {connector.name!r} cannot be polled for changes")
    return WatermarkPoller(connector, sink, store, targets)


class WatermarkPoller:
    """Polls one connection through ``read_changes``: one call per object and cycle."""

    def __init__(
        self, connector: Connector, sink: ChangeSink, store: Store, targets: Sequence[PollTarget]
    ) -> None:
        others = sorted({t.connection for t in targets} - {connector.name})
        if others:
            raise ValueError(
                f"this poller reads the connection {connector.name!r}; targets name {', '.join(others)}"
            )
        self.connector = connector
        self.source = cast(PolledSource, connector)
        self.sink = sink
        self.store = store
        self.targets = tuple(targets)
        self._objects: dict[str, list[PollTarget]] = {}
        for target in self.targets:
            self._objects.setdefault(target.object_name, []).append(target)

    @property
    def connection(self) -> str:
        return self.connector.name

    def poll_once(self) -> PollResult:
        per_target = dict.fromkeys(self.targets, 0)
        calls = duplicates = 0
        for object_name, targets in self._objects.items():
            fields = sorted({f for t in targets for f in t.fields})
            mark = watermarks.get(self.store, self.connection, object_name)
            try:
                batch = self.source.read_changes(object_name, mark, fields or None)
            except RetryLater as exc:
                log.warning("polling %s %s: %s; retried next cycle", self.connection, object_name, exc)
                return PollResult(
                    sum(per_target.values()),
                    calls + 1,
                    per_target,
                    duplicates,
                    True,
                    retry_after=exc.retry_after,
                )
            calls += 1
            shared = len({t.flow for t in targets}) > 1
            changes: dict[PollTarget, list[PolledChange]] = {t: [] for t in targets}
            for record in batch.records:
                for target in targets:
                    tag = f":{target.flow}" if shared else ""
                    if record.deleted:
                        delivery = f"poll-del:{record.id}{tag}"
                        change = PolledChange(self.connection, target.flow, record.id, "delete", {}, delivery)
                    else:
                        values = {name: record.fields.get(name) for name in target.fields}
                        if target.stamped and record.modified:
                            values["_at"] = record.modified
                        delivery = f"poll:{record.id}:{record.modified}{tag}"
                        change = PolledChange(
                            self.connection, target.flow, record.id, "upsert", values, delivery
                        )
                    changes[target].append(change)
            new_mark = batch.watermark if batch.watermark != mark else None

            def work(
                conn: Connection,
                changes: dict[PollTarget, list[PolledChange]] = changes,
                key: str = object_name,
                new_mark: str | None = new_mark,
            ) -> dict[PollTarget, tuple[int, int]]:
                counts = {}
                for target, batch_changes in changes.items():
                    if batch_changes:
                        result = self.sink.enqueue(batch_changes, conn=conn)
                        counts[target] = (result.accepted, result.duplicates)
                if new_mark is not None:
                    watermarks.put(conn, self.connection, key, new_mark)
                return counts

            for target, (accepted, dups) in self.store.run(work).items():
                per_target[target] += accepted
                duplicates += dups
        return PollResult(sum(per_target.values()), calls, per_target, duplicates)
