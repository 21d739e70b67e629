"""The worker: claims changes, maps them, asks the lock rules, writes them in batches.

::

    claim (lease) ──► group by flow ──► lock check ──► map fields ──► connector.write_batch
         ▲                                │ locked         │ bad data     │ per record
         │                                ▼                ▼              ├─ ok ─────► complete, link, log
         └── retry (backoff, back of line) ◄── RetryLater ─┴─ whole call ─┤─ FixTheData ► dead letter
                                                                          └─ RetryLater ► retry

Every claimed change ends in exactly one of: completed, retried (back to pending with a later
``available_at``) or dead-lettered. A worker that dies mid-way loses nothing: its leases expire and
another worker claims the same changes; effects are idempotent (upserts by external id, deletes of
an absent record succeed), so applying twice lands once.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crmsync.alerts import auth_failure, auth_ok, dead_letter_alert
from crmsync.connectors.base import Connector, Write, WriteResult
from crmsync.engine.flows import FlowRuntime
from crmsync.engine.queue import ClaimedChange
from crmsync.errors import BudgetExhausted, CrmsyncError, Fatal, FixTheData, LockedRecord

if TYPE_CHECKING:
    from crmsync.engine.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass
class BatchOutcome:
    applied: int = 0
    retried: int = 0
    dead: int = 0
    skipped: int = 0


class Worker:
    def __init__(self, runtime: Runtime, *, owner: str, batch_size: int = 200, poll_interval: float = 0.2):
        self.rt = runtime
        self.owner = owner
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self._troubled: set[str] = set()  # connections whose credentials failed (alert open)

    # -- loop ----------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Work until ``stop`` is set; the batch in hand is finished (not abandoned) first."""
        log.info("worker %s started", self.owner)
        while not stop.is_set():
            try:
                done = self.run_once()
            except Exception:  # the loop must survive a store outage; the batch's leases expire
                log.exception("worker %s: batch failed; its changes will be claimed again", self.owner)
                stop.wait(min(5.0, self.poll_interval * 10))
                continue
            if done == 0:
                stop.wait(self.poll_interval)
        log.info("worker %s stopped", self.owner)

    def run_once(self) -> int:
        """Claim and process one batch; returns how many changes it held."""
        claimed = self.rt.queue.claim(self.owner, self.batch_size, flows=self.rt.active_flows())
        if not claimed:
            return 0
        by_flow: dict[str, list[ClaimedChange]] = defaultdict(list)
        for change in claimed:
            by_flow[change.flow].append(change)
        for flow_name, changes in by_flow.items():
            flow = self.rt.flows.get(flow_name)
            if flow is None:
                for change in changes:
                    self._dead(change, Fatal(f"flow {flow_name!r} is not in the configuration any more"))
                continue
            self.process(flow, changes)
        return len(claimed)

    # -- one flow's batch ------------------------------------------------------------------------
    def process(self, flow: FlowRuntime, changes: Sequence[ClaimedChange]) -> BatchOutcome:
        if self.rt.is_two_way(flow):
            return self._two_way(flow, changes)
        outcome = BatchOutcome()
        target = self.rt.connector(flow.target)
        try:
            locked = self._locked(flow, changes)
        except CrmsyncError as exc:  # the lock rule cannot be asked now: nothing is written
            if isinstance(exc, Fatal):
                self._fatal(flow.target, flow.name, exc)
            for change in changes:
                self._retry(change, exc)
            outcome.retried = len(changes)
            return outcome
        # after the lock check, which refreshed what the vendor reports of the budget
        if not flow.urgent and self._over_budget(target):
            pause = BudgetExhausted(
                f"{flow.target}'s daily API use is past its guard; {flow.name!r} is not urgent: it waits",
                retry_after=self.rt.config.worker.backoff.max_seconds,
            )
            for change in changes:
                self._retry(change, pause)
            outcome.retried = len(changes)
            return outcome
        writes: list[Write] = []
        held: dict[str, ClaimedChange] = {}
        for change in changes:
            parent = self._parent_of(flow, change)
            if parent is not None and parent in locked:
                assert flow.lock is not None
                self._dead(change, LockedRecord(flow.lock_message({**change.fields, flow.lock.key: parent})))
                outcome.dead += 1
                continue
            try:
                write = self._write_for(flow, change)
            except FixTheData as exc:
                self._dead(change, exc)
                outcome.dead += 1
                continue
            if write is None:
                self.rt.ledger.skipped(flow, change, f"on_delete is {flow.on_delete}")
                self.rt.queue.complete([change])
                outcome.skipped += 1
                continue
            writes.append(write)
            held[change.record_key] = change
        try:
            writes = self._resolve_deletes(flow, writes)
        except CrmsyncError as exc:
            for change in held.values():
                self._retry(change, exc)
            outcome.retried += len(held)
            return outcome
        for key in set(held) - {w.key for w in writes}:
            self.rt.ledger.skipped(flow, held[key], "nothing to delete: the record is not in the target")
            self.rt.queue.complete([held.pop(key)])
            outcome.skipped += 1
        if not writes:
            return outcome
        try:
            results = target.write_batch(flow.object_name, writes)
        except CrmsyncError as exc:
            for change in held.values():
                self._retry(change, exc)
            outcome.retried += len(held)
            if isinstance(exc, Fatal):
                self._fatal(flow.target, flow.name, exc)
            return outcome
        finally:
            usage = target.api_usage()
            if usage is not None:
                self.rt.ledger.save_budget(flow.target, usage)
        done: list[tuple[ClaimedChange, Write, WriteResult]] = []
        for write, result in zip(writes, results, strict=True):
            change = held[write.key]
            if result.ok:
                done.append((change, write, result))
            elif isinstance(result.error, FixTheData) or result.error is None:
                self._dead(change, result.error or FixTheData("refused without a reason"))
                outcome.dead += 1
            else:  # the call carrying it failed (retry later, or credentials): not the record's fault
                self._retry(change, result.error)
                outcome.retried += 1
        if done:
            self._healthy(flow.target)
            self.rt.ledger.applied(flow, done)
            self.rt.queue.complete([c for c, _, _ in done])
            self.rt.metrics.applied(flow.name, len(done), [c.created_at for c, _, _ in done])
            outcome.applied = len(done)
        return outcome

    def _two_way(self, flow: FlowRuntime, changes: Sequence[ClaimedChange]) -> BatchOutcome:
        """Flows between two systems: one record at a time, in either direction (see :mod:`.twoway`)."""
        outcome = BatchOutcome()
        for change in changes:
            try:
                what = self.rt.twoway.apply(flow, change)
            except FixTheData as exc:
                self._dead(change, exc)
                outcome.dead += 1
                continue
            except CrmsyncError as exc:
                if isinstance(exc, Fatal):
                    written = flow.target if change.source == flow.source else flow.source
                    self._fatal(written, flow.name, exc)
                self._retry(change, exc)
                outcome.retried += 1
                continue
            self._healthy(flow.target if change.source == flow.source else flow.source)
            if what.startswith("skipped"):
                self.rt.ledger.skipped(flow, change, what)
                outcome.skipped += 1
            else:
                self.rt.ledger.applied_one(flow, change, what)
                outcome.applied += 1
                self.rt.metrics.applied(flow.name, 1, [change.created_at])
            self.rt.queue.complete([change])
        return outcome

    def _fatal(self, connection: str, flow: str, error: CrmsyncError) -> None:
        """A person must act (credentials, configuration): log it and alert, once per problem."""
        log.error("flow %s: %s", flow, error)
        self._troubled.add(connection)
        try:
            auth_failure(self.rt.alerter, connection, error)
        except Exception:
            log.exception("could not raise the alert for %s", connection)

    def _healthy(self, connection: str) -> None:
        if connection in self._troubled:
            self._troubled.discard(connection)
            try:
                auth_ok(self.rt.alerter, connection)
            except Exception:
                log.exception("could not clear the alert for %s", connection)

    def _over_budget(self, target: Connector) -> bool:
        over_guard = getattr(target, "over_guard", None)
        if over_guard is None or not over_guard():
            return False
        try:  # what the vendor reported may be stale: ask once more (one cheap call)
            target.check()
        except CrmsyncError as exc:
            log.warning("could not refresh %s's API use: %s", target.name, exc)
        return bool(over_guard())

    def _parent_of(self, flow: FlowRuntime, change: ClaimedChange) -> str | None:
        if flow.lock is None:
            return None
        parent = flow.lock_parent(change.fields)
        if parent is None:
            # a delete (or a partial correction) names no parent: use what was last synced
            parent = flow.lock_parent(self.rt.ledger.last_synced(flow, change.record_key))
        return parent

    def _locked(self, flow: FlowRuntime, changes: Sequence[ClaimedChange]) -> set[str]:
        if flow.lock is None:
            return set()
        parents = {p for p in (self._parent_of(flow, c) for c in changes) if p is not None}
        return self.rt.locks.locked(flow, self.rt.queryable(flow.target), parents)

    def _write_for(self, flow: FlowRuntime, change: ClaimedChange) -> Write | None:
        if change.operation == "upsert":
            fields = flow.to_target(change.record_key, change.fields)
            if flow.match_field is None:
                target_id = self.rt.ledger.target_id(flow, change.record_key)
                if target_id is None:
                    return Write(key=change.record_key, operation="create", fields=fields)
                return Write(key=change.record_key, operation="update", fields=fields, target_id=target_id)
            return Write(
                key=change.record_key,
                operation="upsert",
                fields=fields,
                external_id_field=flow.match_field,
                external_id=change.record_key,
            )
        if flow.on_delete != "delete":  # ignore; archive leaves Salesforce records in place
            return None
        return Write(
            key=change.record_key,
            operation="delete",
            target_id=self.rt.ledger.target_id(flow, change.record_key),
            external_id_field=flow.match_field,
            external_id=change.record_key,
        )

    def _resolve_deletes(self, flow: FlowRuntime, writes: list[Write]) -> list[Write]:
        """Deletes need the target's id. Where no link is known (a worker may have died between
        writing and recording it), ask the target by external id — one query for the batch — and
        drop the deletes of records the target does not have."""
        unknown = [w.key for w in writes if w.operation == "delete" and w.target_id is None]
        if not unknown:
            return writes
        found = self.rt.find_by_external_ids(flow, unknown) if flow.match_field else {}
        out = []
        for w in writes:
            if w.operation == "delete" and w.target_id is None:
                if w.key not in found:
                    continue
                w = Write(key=w.key, operation="delete", target_id=found[w.key])
            out.append(w)
        return out

    # -- outcomes ----------------------------------------------------------------------------------
    def _retry(self, change: ClaimedChange, error: CrmsyncError) -> None:
        retry_after = getattr(error, "retry_after", None)
        max_attempts = self.rt.max_attempts
        budget = isinstance(error, BudgetExhausted)  # waiting for a budget is not the change failing
        if max_attempts is not None and not budget and change.attempts + 1 >= max_attempts:
            self._dead(change, error)
            return
        self.rt.queue.retry(change, error, retry_after=retry_after)
        self.rt.ledger.retried(change, error)
        self.rt.metrics.failed(change.flow, type(error).__name__)

    def _dead(self, change: ClaimedChange, error: CrmsyncError) -> None:
        self.rt.queue.dead(change, error)
        self.rt.ledger.dead(change, error)
        try:  # one alert per flow while it has dead letters; a failed alert must not stop the worker
            dead_letter_alert(self.rt.alerter, change.flow, change.record_key, error)
        except Exception:
            log.exception("could not raise the dead-letter alert")
        self.rt.metrics.failed(change.flow, type(error).__name__)
        self.rt.metrics.dead_letter(change.flow)
