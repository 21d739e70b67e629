"""``crmsync sync FLOW``: one pass that applies what ``crmsync preview`` shows, through the queue.

::

    preview (read both sides) ──► plan: one change per record that would be written
        ──► enqueue (stable delivery ids) ──► workers apply ──► summary per side

Every record the preview would create or update becomes a change in the queue, as a webhook or a
poll would make it: an item of the board (the whole item) for what travels to the target, a
target record (its two-way fields) for what travels back. Workers apply them with every rule of
two-way sync (matching, conflicts, related objects, write-backs), so a sync and a webhook never
disagree. Delivery ids are built from the record and its modification stamp: running the sync
again (after Ctrl-C, a crash, or to check) queues nothing twice, and a record already in step is
not queued at all. Records that exist only in the target are left alone (two-way flows create on
the target only).

A flow that has synced once is noted in the store; ``crmsync run`` syncs the two-way flows that
never have (unless ``initial_sync: false``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

from crmsync.connectors.base import Record
from crmsync.connectors.capabilities import Readable, require
from crmsync.engine.flows import FlowRuntime
from crmsync.engine.preview import Preview, RecordPreview
from crmsync.engine.queue import NewChange
from crmsync.engine.worker import Worker
from crmsync.errors import ConfigError
from crmsync.store import schema as t
from crmsync.store import watermarks

if TYPE_CHECKING:
    from crmsync.engine.runtime import Runtime

log = logging.getLogger(__name__)

Side = Literal["to_target", "to_source"]
#: states of a change that is over (``done``: applied or skipped; ``dead``: a dead letter)
FINISHED = ("done", "dead")


@dataclass
class SideCounts:
    created: int = 0
    updated: int = 0
    skipped: int = 0
    failed: int = 0
    waiting: int = 0  # still queued when the sync stopped waiting (retrying, or interrupted)


@dataclass
class SyncSummary:
    flow: str
    to_target: SideCounts = field(default_factory=SideCounts)
    to_source: SideCounts = field(default_factory=SideCounts)
    queued: int = 0
    interrupted: bool = False

    @property
    def complete(self) -> bool:
        return not self.interrupted and self.to_target.waiting == 0 and self.to_source.waiting == 0

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"complete": self.complete}


@dataclass(frozen=True)
class Planned:
    """One change the sync queues, and what the preview said it would do."""

    side: Side
    action: Literal["create", "update"]
    change: NewChange


def synced_mark(flow: FlowRuntime) -> str:
    return f"synced:{flow.name}"


def has_synced(runtime: Runtime, flow: FlowRuntime) -> bool:
    """Has a sync of this flow ever finished?"""
    return watermarks.get(runtime.store, flow.source, synced_mark(flow)) is not None


def plan(
    flow: FlowRuntime,
    previews: Sequence[RecordPreview],
    items: dict[str, tuple[dict[str, Any], str | None]],
    targets: dict[str, Record],
) -> list[Planned]:
    """The changes that apply ``previews`` (pure). ``items``: the board's fields and stamp per key;
    ``targets``: the linked target records whose two-way fields travel back, by id."""
    out: list[Planned] = []
    for p in previews:
        to_target = p.action in ("create", "refused") or any(c.direction == "to_target" for c in p.fields)
        to_target = to_target or any(r.action in ("update", "create", "refused") for r in p.related)
        fields, stamp = items[p.record]
        if to_target and p.action in ("create", "update", "refused"):  # refused: a dead letter says why
            change = NewChange(
                source=flow.source,
                flow=flow.name,
                record_key=p.record,
                operation="upsert",
                fields={**fields, "_at": stamp} if stamp else dict(fields),
                delivery_id=f"sync:{flow.name}:{p.record}:{stamp or '-'}",
            )
            out.append(Planned("to_target", "update" if p.target_id else "create", change))
        back = {c.field for c in p.fields if c.direction == "to_source"}
        target = targets.get(p.target_id or "")
        if back and target is not None:
            names = {r.target for r in flow.rules if r.to_source and r.source in back}
            stamp = target.modified or ""  # when the target record changed, as its connector tells
            change = NewChange(
                source=flow.target,
                flow=flow.name,
                record_key=str(p.target_id),
                operation="upsert",
                fields={n: target.fields.get(n) for n in names} | ({"_at": stamp} if stamp else {}),
                delivery_id=f"sync:{flow.name}:{p.target_id}:{stamp or '-'}",
            )
            out.append(Planned("to_source", "update", change))
    return out


class InitialSync:
    """Runs ``crmsync sync`` for one flow: plan from a preview, queue, apply, count."""

    def __init__(self, runtime: Runtime, *, batch_size: int = 50, poll_interval: float = 0.2) -> None:
        self.rt = runtime
        self.batch_size = batch_size
        self.poll_interval = poll_interval

    def flow(self, name: str) -> FlowRuntime:
        found = self.rt.flows.get(name)
        if found is None:
            valid = ", ".join(sorted(self.rt.flows)) or "(none)"
            raise ConfigError(f"unknown flow {name!r}; valid: {valid}")
        if not self.rt.is_two_way(found):
            raise ConfigError(
                f"flow {name!r} is fed by an application: its changes arrive through the ingest API, "
                "there is nothing to read and sync"
            )
        return found

    def queue(self, name: str) -> tuple[SyncSummary, list[Planned]]:
        """Read both sides, count what is already in step, and queue the rest."""
        flow = self.flow(name)
        preview = Preview(self.rt, connector=self.rt.connector)  # the runtime's connectors: not closed here
        records, _ = preview.board_records(flow)
        items = {r.id: (dict(r.fields), r.modified) for r in records}
        shown = preview.compare(flow, records)
        back_ids = [
            p.target_id
            for p in shown.records
            if p.target_id and any(c.direction == "to_source" for c in p.fields)
        ]
        targets = {
            r.id: r
            for r in (
                require(self.rt.connector(flow.target), Readable, f"sync of {flow.name!r}").read_records(
                    flow.object_name, back_ids
                )
                if back_ids
                else []
            )
        }
        targets |= {key[:15]: record for key, record in targets.items()}
        planned = plan(flow, shown.records, items, targets)
        summary = SyncSummary(flow.name)
        summary.to_target.skipped = sum(1 for p in shown.records if p.action in ("unchanged", "skipped"))
        result = self.rt.queue.enqueue([p.change for p in planned])
        summary.queued = result.accepted
        log.info(
            "sync %s: %d record(s) read, %d change(s) to apply (%d queued before)",
            flow.name,
            len(records),
            len(planned),
            result.duplicates,
        )
        return summary, planned

    def run(
        self,
        name: str,
        *,
        stop: threading.Event | None = None,
        wait: float | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> SyncSummary:
        """Queue and apply; return when every queued change is over, or after ``wait`` seconds of
        only retries left (None: until ``stop``). The flow is noted as synced when all are over."""
        stop = stop or threading.Event()
        summary, planned = self.queue(name)
        flow = self.flow(name)
        worker = Worker(
            self.rt, owner=f"{socket.gethostname()}:{os.getpid()}:sync:{name}", batch_size=self.batch_size
        )
        total = len(planned)
        idle_since: float | None = None
        states = self._states(planned)
        while not stop.is_set():
            over = sum(1 for p in planned if states.get(_key(p)) in FINISHED)
            if progress is not None:
                progress(over, total)
            if over == total:
                break
            if worker.run_once():
                idle_since = None
            else:
                idle_since = idle_since if idle_since is not None else time.monotonic()
                if wait is not None and time.monotonic() - idle_since > wait:
                    break
                stop.wait(self.poll_interval)
            states = self._states(planned)
        summary.interrupted = stop.is_set()
        self._count(flow, summary, planned, self._states(planned))
        if summary.complete:
            watermarks.put(self.rt.store, flow.source, synced_mark(flow), datetime.now(UTC).isoformat())
        return summary

    def _states(self, planned: Sequence[Planned]) -> dict[tuple[str, str], str]:
        c = t.changes.c
        found: dict[tuple[str, str], str] = {}
        by_source: dict[str, list[str]] = {}
        for p in planned:
            by_source.setdefault(p.change.source, []).append(str(p.change.delivery_id))
        with self.rt.store.read() as conn:
            for source, ids in by_source.items():
                for start in range(0, len(ids), 500):
                    rows = conn.execute(
                        sa.select(c.delivery_id, c.state).where(
                            c.source == source, c.delivery_id.in_(ids[start : start + 500])
                        )
                    )
                    found.update({(source, str(r.delivery_id)): str(r.state) for r in rows})
        return found

    def _count(
        self,
        flow: FlowRuntime,
        summary: SyncSummary,
        planned: Sequence[Planned],
        states: dict[tuple[str, str], str],
    ) -> None:
        for p in planned:
            side = summary.to_target if p.side == "to_target" else summary.to_source
            state = states.get(_key(p))
            if state == "dead":
                side.failed += 1
            elif state != "done" and state is not None:  # purged rows were done long ago
                side.waiting += 1
            else:
                latest = self._latest(flow, p.change.record_key)
                if latest is None:  # purged long ago: as planned
                    side.created += p.action == "create"
                    side.updated += p.action == "update"
                elif latest["outcome"] == "skipped":
                    side.skipped += 1
                elif latest["operation"] == "create":  # what the worker did (an adopted record: update)
                    side.created += 1
                else:
                    side.updated += 1

    def _latest(self, flow: FlowRuntime, key: str) -> dict[str, Any] | None:
        """The record's latest sync-log line of an outcome (what the worker did with it)."""
        lines = self.rt.ledger.history(flow=flow.name, key=key, limit=5)
        return next((h for h in lines if h["outcome"] in ("applied", "skipped")), None)


def _key(p: Planned) -> tuple[str, str]:
    return (p.change.source, str(p.change.delivery_id))


def initial_syncs(runtime: Runtime, stop: threading.Event) -> None:
    """What ``crmsync run`` does first: sync each two-way flow that never synced (unless
    ``initial_sync: false``). Its changes are applied by the process's workers and this one."""
    for flow in runtime.flows.values():
        if stop.is_set():
            return
        if not runtime.is_two_way(flow) or not flow.flow.initial_sync:
            continue
        try:
            if has_synced(runtime, flow):
                continue
            log.info(
                "flow %s has never synced: applying what `crmsync preview %s` shows", flow.name, flow.name
            )
            summary = InitialSync(runtime).run(flow.name, stop=stop)
        except Exception:  # the process goes on; the next start tries again
            log.exception("initial sync of %s failed; it runs again at the next start", flow.name)
            continue
        log.info("sync %s: %s", flow.name, describe(summary))


def describe(summary: SyncSummary) -> str:
    parts = []
    for label, side in (("to the target", summary.to_target), ("to the source", summary.to_source)):
        parts.append(
            f"{label}: {side.created} created, {side.updated} updated, {side.skipped} skipped, "
            f"{side.failed} failed" + (f", {side.waiting} waiting" if side.waiting else "")
        )
    return "; ".join(parts)
