"""The worker: claims changes, maps them, asks the lock rules, writes them in batches.

::

    claim (lease) ──► group by flow ──► lock check ──► map fields ──► connector.write_batch
         ▲                                │ locked         │ bad data     │ per record
         │                                ▼                ▼              ├─ ok ─────► complete, link, log
         └── retry (backoff, back of line) ◄── RetryLater ─┴─ whole call ─┤─ FixTheData ► dead letter
                                                                          └─ RetryLater ► retry

Every claimed change ends in exactly one of: completed, retried (back to pending with a later
``available_at``), released (its flow was paused) or dead-lettered. A worker that dies mid-way loses
nothing: its leases expire and another worker claims the same changes; effects are idempotent
(upserts by external id, deletes of an absent record succeed), so applying twice lands once.
Two-way flows plan their changes first (echoes, conflicts) and write them in batches the same way,
with the same outcomes (:mod:`.twoway_batch`).

Rules that keep one record from holding back another:

- any exception while applying a change is recorded on that change and counted as an attempt;
  an exception nobody foresaw in a batch makes the worker apply the batch's changes one by one,
  so that only the change that causes it is retried (and becomes a dead letter after
  ``worker.max_attempts``);
- a whole call failing transiently (the vendor down, a rate limit) retries its changes without
  counting against ``max_attempts``: nothing is lost while a vendor is down, and once a call to it
  works again the changes waiting on it are retried at once (:mod:`.health`);
- a heartbeat extends the leases of the changes a worker still holds while it works (a paced call
  may wait for minutes); a change whose lease was lost anyway is not written;
- :class:`~crmsync.errors.Fatal` (refused credentials, misconfiguration) pauses the flow: its
  changes wait untouched until the connection's settings change or it accepts crmsync again; those
  whose write was sent before it came (it may have landed) say so when they are claimed again
  (``Write.maybe_applied``), so that a create is not made twice.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from crmsync.alerts import dead_letter_alert
from crmsync.connectors.base import Connector, Write, WriteResult
from crmsync.connectors.capabilities import Budgeted, Writable, require
from crmsync.engine.flows import FlowRuntime
from crmsync.engine.queue import ChangeQueue, ClaimedChange
from crmsync.engine.twoway_batch import TwoWayBatch
from crmsync.errors import (
    BudgetExhausted,
    CrmsyncError,
    Fatal,
    FixTheData,
    LockedRecord,
    Unexpected,
)

if TYPE_CHECKING:
    from crmsync.engine.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass
class BatchOutcome:
    applied: int = 0
    retried: int = 0
    dead: int = 0
    skipped: int = 0


class Heartbeat:
    """Extends the leases of the changes a worker still holds, every third of the lease, while it
    works on them; remembers the ones another worker took over (their lease ran out anyway).

    One thread serves a worker's batches one after the other (:meth:`watch` each batch,
    :meth:`done` after it): a busy worker does not start and join a thread per batch. The thread
    ends on its own after :data:`IDLE_BEATS` beats with no batch in hand and starts again with the
    next one. As a context manager it watches ``in_hand`` until the block ends."""

    #: beats with nothing in hand before the thread ends
    IDLE_BEATS = 3

    def __init__(
        self,
        queue: ChangeQueue,
        in_hand: Callable[[], list[ClaimedChange]] | None = None,
        lease_seconds: float = 60.0,
    ) -> None:
        self.queue = queue
        self._lock = threading.Lock()
        self._in_hand = in_hand
        self.lease_seconds = lease_seconds
        self._stop = threading.Event()
        self._lost: set[int] = set()
        self._thread: threading.Thread | None = None

    @property
    def interval(self) -> float:
        return max(self.lease_seconds / 3.0, 0.05)

    def watch(self, in_hand: Callable[[], list[ClaimedChange]], lease_seconds: float) -> None:
        """Keep the leases of ``in_hand()`` until :meth:`done` (a new batch: nothing lost yet)."""
        with self._lock:
            self._in_hand = in_hand
            self.lease_seconds = lease_seconds
            self._lost = set()
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)
                self._thread.start()

    def done(self) -> None:
        """The batch is finished: nothing to keep until the next :meth:`watch`."""
        with self._lock:
            self._in_hand = None

    def close(self) -> None:
        """Stop the thread (it would end on its own once idle)."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._in_hand = None
        self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def __enter__(self) -> Heartbeat:
        assert self._in_hand is not None, "a heartbeat used as a context manager needs in_hand"
        self.watch(self._in_hand, self.lease_seconds)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _beat(self) -> None:
        idle = 0
        while not self._stop.wait(self.interval):
            with self._lock:
                in_hand = self._in_hand
                if in_hand is None:
                    idle += 1
                    if idle >= self.IDLE_BEATS and self._thread is threading.current_thread():
                        self._thread = None  # the next watch starts another
                        return
                    continue
            idle = 0
            changes = in_hand()
            if not changes:
                continue
            try:
                held = self.queue.extend(changes, self.lease_seconds)
            except Exception:  # the store may be away for a moment; the next beat tries again
                log.warning("could not extend the leases of %d change(s)", len(changes), exc_info=True)
                continue
            lost = {i for c in changes for i in c.change_ids} - held
            with self._lock:
                if lost - self._lost:
                    log.warning(
                        "lease lost on %d change(s): another worker has them now", len(lost - self._lost)
                    )
                self._lost |= lost

    def lost(self, change: ClaimedChange) -> bool:
        with self._lock:
            return any(i in self._lost for i in change.change_ids)


class Worker:
    def __init__(self, runtime: Runtime, *, owner: str, batch_size: int = 200, poll_interval: float = 0.2):
        self.rt = runtime
        self.owner = owner
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self._settled: set[tuple[int, ...]] = set()  # changes of the batch in hand given an outcome
        self._sent: set[tuple[int, ...]] = set()  # changes of the batch in hand whose write was sent
        self._beat: Heartbeat | None = None
        self._heart: Heartbeat | None = None  # one heartbeat thread for batch after batch

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
            if done == 0:  # a change queued in this process wakes the worker at once
                self.rt.queue.wait_for_work(self.poll_interval)
        if self._heart is not None:
            self._heart.close()
        log.info("worker %s stopped", self.owner)

    def run_once(self) -> int:
        """Claim and process one batch; returns how many changes it held."""
        self.rt.health.maintain()
        claimed = self.rt.queue.claim(self.owner, self.batch_size, flows=self.rt.health.active_flows())
        if not claimed:
            return 0
        by_flow: dict[str, list[ClaimedChange]] = defaultdict(list)
        for change in claimed:
            by_flow[change.flow].append(change)
        self._settled = set()
        self._sent = set()
        lease = self.rt.config.worker.lease_seconds
        if self._heart is None:
            self._heart = Heartbeat(self.rt.queue)
        heart = self._heart
        heart.watch(lambda: self._in_hand(claimed), lease)
        self._beat = heart
        try:
            for flow_name, changes in by_flow.items():
                flow = self.rt.flows.get(flow_name)
                if flow is None:
                    for change in changes:
                        gone = Fatal(f"flow {flow_name!r} is not in the configuration any more")
                        self._dead(change, gone)
                    continue
                self._guarded(flow, changes)
        finally:
            heart.done()
            self._beat = None
        return len(claimed)

    def _in_hand(self, claimed: Sequence[ClaimedChange]) -> list[ClaimedChange]:
        settled = self._settled
        return [c for c in claimed if c.change_ids not in settled]

    def _lost(self, change: ClaimedChange) -> bool:
        return self._beat is not None and self._beat.lost(change)

    def _guarded(self, flow: FlowRuntime, changes: Sequence[ClaimedChange]) -> None:
        """Process a flow's changes; an exception nobody foresaw is pinned on the change causing it."""
        try:
            self.process(flow, changes)
        except SQLAlchemyError:
            raise  # the store is away: the loop waits, the leases expire, nothing is lost
        except Exception as exc:
            left = [c for c in changes if c.change_ids not in self._settled and not self._lost(c)]
            if len(left) == 1:
                log.exception("flow %s: unexpected error applying %r", flow.name, left[0].record_key)
                self._retry(left[0], Unexpected.wrap(exc))
            elif left:
                log.warning(
                    "flow %s: unexpected %s in a batch of %d; applying them one by one",
                    flow.name,
                    type(exc).__name__,
                    len(left),
                )
                for change in left:
                    self._guarded(flow, [change])

    # -- one flow's batch ------------------------------------------------------------------------
    def process(self, flow: FlowRuntime, changes: Sequence[ClaimedChange]) -> BatchOutcome:
        if self.rt.is_two_way(flow):
            return self._two_way(flow, changes)
        outcome = BatchOutcome()
        try:
            connector = self.rt.connector(flow.target)
            target = require(connector, Writable, f"flow {flow.name!r} (target)")
            locked, refused = self._locked(flow, changes)
        except Fatal as exc:
            self._pause(flow, flow.target, changes, exc)
            outcome.retried = len(changes)
            return outcome
        except CrmsyncError as exc:  # the lock rule cannot be asked now: nothing is written
            self.rt.health.down(flow.target, exc)
            for change in changes:
                self._retry(change, exc, transient=True)
            outcome.retried = len(changes)
            return outcome
        # after the lock check, which refreshed what the vendor reports of the budget
        if not flow.urgent and self._over_budget(connector):
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
            if parent is not None and parent in refused:
                self._dead(change, refused[parent])
                outcome.dead += 1
                continue
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
                self._complete([change])
                outcome.skipped += 1
                continue
            writes.append(write)
            held[change.record_key] = change
        try:
            writes = self._resolve_deletes(flow, writes)
        except Fatal as exc:
            self._pause(flow, flow.target, list(held.values()), exc)
            outcome.retried += len(held)
            return outcome
        except CrmsyncError as exc:
            self.rt.health.down(flow.target, exc)
            for change in held.values():
                self._retry(change, exc, transient=True)
            outcome.retried += len(held)
            return outcome
        for key in set(held) - {w.key for w in writes}:
            self.rt.ledger.skipped(flow, held[key], "nothing to delete: the record is not in the target")
            self._complete([held.pop(key)])
            outcome.skipped += 1
        lost = [w for w in writes if self._lost(held[w.key])]
        if lost:  # another worker holds these now: writing them here could undo its newer write
            for w in lost:
                self._settled.add(held.pop(w.key).change_ids)
            writes = [w for w in writes if w.key in held]
        if not writes:
            return outcome
        self._sent.update(held[w.key].change_ids for w in writes)
        try:
            results = target.write_batch(flow.object_name, writes)
        except Fatal as exc:
            self._pause(flow, flow.target, list(held.values()), exc)
            outcome.retried += len(held)
            return outcome
        except CrmsyncError as exc:
            self.rt.health.down(flow.target, exc)
            for change in held.values():
                self._retry(change, exc, transient=True)
            outcome.retried += len(held)
            return outcome
        finally:
            usage = connector.api_usage()
            if usage is not None:
                self.rt.ledger.save_budget(flow.target, usage)
        self.rt.health.working(flow.target)
        done: list[tuple[ClaimedChange, Write, WriteResult]] = []
        refused_by_settings: list[ClaimedChange] = []
        fatal: Fatal | None = None
        for write, result in zip(writes, results, strict=True):
            change = held[write.key]
            if result.ok:
                done.append((change, write, result))
            elif isinstance(result.error, FixTheData) or result.error is None:
                self._dead(change, result.error or FixTheData("refused without a reason"))
                outcome.dead += 1
            elif isinstance(result.error, Fatal):  # e.g. no access to a field: a person must act
                fatal = result.error
                refused_by_settings.append(change)
                outcome.retried += 1
            else:  # the record could not be written now (e.g. a row lock): try it again later
                self._retry(change, result.error)
                outcome.retried += 1
        if fatal is not None:
            self._pause(flow, flow.target, refused_by_settings, fatal)
        if done:
            self.rt.ledger.applied(flow, done)
            self._complete([c for c, _, _ in done])
            self.rt.metrics.applied(flow.name, len(done), [c.created_at for c, _, _ in done])
            outcome.applied = len(done)
        return outcome

    def _two_way(self, flow: FlowRuntime, changes: Sequence[ClaimedChange]) -> BatchOutcome:
        """Flows between two systems, in either direction: the changes are planned together and
        their writes of one object sent in batches (see :mod:`.twoway_batch` and :mod:`.twoway`)."""
        return TwoWayBatch(self, flow, BatchOutcome()).run(changes)

    def _pause(
        self, flow: FlowRuntime, connection: str, changes: Sequence[ClaimedChange], error: CrmsyncError
    ) -> None:
        """A person must act (credentials, configuration): pause the flow, alert once, and give its
        changes back untouched; they wait in the queue until the connection works again. Those whose
        write was sent may have landed before the error came: their next claim says so."""
        self.rt.health.pause(flow.name, connection, error)
        if changes:
            sent = [c for c in changes if c.change_ids in self._sent]
            self.rt.queue.release(sent, sent=True)
            self.rt.queue.release([c for c in changes if c.change_ids not in self._sent])
            self._settled.update(c.change_ids for c in changes)

    def _over_budget(self, target: Connector) -> bool:
        if not isinstance(target, Budgeted) or not target.over_guard():
            return False
        try:  # what the vendor reported may be stale: ask once more (one cheap call)
            target.check()
        except CrmsyncError as exc:
            log.warning("could not refresh %s's API use: %s", target.name, exc)
        return target.over_guard()

    def _parent_of(self, flow: FlowRuntime, change: ClaimedChange) -> str | None:
        if flow.lock is None:
            return None
        parent = flow.lock_parent(change.fields)
        if parent is None:
            # a delete (or a partial correction) names no parent: use what was last synced
            parent = flow.lock_parent(self.rt.ledger.last_synced(flow, change.record_key))
        return parent

    def _locked(
        self, flow: FlowRuntime, changes: Sequence[ClaimedChange]
    ) -> tuple[set[str], dict[str, FixTheData]]:
        """The locked parents, and the parents the target refused to be asked about (e.g. a value
        that is no record id) with its reason: only their changes fail, the others go on."""
        if flow.lock is None:
            return set(), {}
        parents = {p for p in (self._parent_of(flow, c) for c in changes) if p is not None}
        target = self.rt.queryable(flow.target, f"flow {flow.name!r} (lock)")
        try:
            return self.rt.locks.locked(flow, target, parents), {}
        except FixTheData:
            if len(parents) <= 1:
                return set(), {p: self._refused_parent(flow, p) for p in parents}
        locked: set[str] = set()
        refused: dict[str, FixTheData] = {}
        for parent in sorted(parents):  # one query each, to find the value(s) the target refuses
            try:
                locked |= self.rt.locks.locked(flow, target, [parent])
            except FixTheData as exc:
                refused[parent] = self._refused_parent(flow, parent, exc)
        return locked, refused

    @staticmethod
    def _refused_parent(flow: FlowRuntime, parent: str, exc: FixTheData | None = None) -> FixTheData:
        assert flow.lock is not None
        reason = f": {exc.message}" if exc is not None else ""
        what = f"{flow.lock.key} {parent!r}"
        return FixTheData(
            f"{what} cannot be checked against the lock rule on {flow.lock.object}{reason}",
            object_name=flow.lock.object,
            record=parent,
            vendor_code=exc.vendor_code if exc is not None else None,
            status=exc.status if exc is not None else None,
            url=exc.url if exc is not None else None,
        )

    def _write_for(self, flow: FlowRuntime, change: ClaimedChange) -> Write | None:
        """The write for ``change``, with what its event says it set and replaced, if it says."""
        write = self._plain_write_for(flow, change)
        return flow.with_event_values(write) if write is not None else None

    def _plain_write_for(self, flow: FlowRuntime, change: ClaimedChange) -> Write | None:
        if change.operation == "upsert":
            fields = flow.to_target(change.record_key, change.fields)
            again = change.maybe_applied  # an earlier attempt may have written it
            if flow.match_field is None:
                target_id = self.rt.ledger.target_id(flow, change.record_key)
                if target_id is None:
                    return Write(
                        key=change.record_key,
                        operation="create",
                        fields=fields,
                        meta=change.meta,
                        maybe_applied=again,
                    )
                return Write(
                    key=change.record_key,
                    operation="update",
                    fields=fields,
                    target_id=target_id,
                    meta=change.meta,
                    maybe_applied=again,
                )
            return Write(
                key=change.record_key,
                operation="upsert",
                fields=fields,
                external_id_field=flow.match_field,
                external_id=change.record_key,
                meta=change.meta,
                maybe_applied=again,
            )
        if flow.on_delete != "delete":  # ignore; archive leaves Salesforce records in place
            return None
        return Write(
            key=change.record_key,
            operation="delete",
            target_id=self.rt.ledger.target_id(flow, change.record_key),
            external_id_field=flow.match_field,
            external_id=change.record_key,
            meta=change.meta,
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
                w = Write(
                    key=w.key,
                    operation="delete",
                    target_id=found[w.key],
                    meta=w.meta,
                    changed=w.changed,
                    previous=w.previous,
                )
            out.append(w)
        return out

    # -- outcomes ----------------------------------------------------------------------------------
    def _complete(self, changes: Sequence[ClaimedChange]) -> None:
        self.rt.queue.complete(changes)
        self._settled.update(c.change_ids for c in changes)

    def _retry(self, change: ClaimedChange, error: CrmsyncError, *, transient: bool = False) -> None:
        """Try ``change`` again after a back-off. ``transient``: the call carrying it failed (the vendor
        down, a rate limit), which is not the change's fault and does not count towards dead-lettering."""
        retry_after = getattr(error, "retry_after", None)
        max_attempts = self.rt.max_attempts
        budget = isinstance(error, BudgetExhausted)  # waiting for a budget is not the change failing
        if max_attempts is not None and not (budget or transient) and change.attempts + 1 >= max_attempts:
            self._dead(change, error)
            return
        self.rt.queue.retry(change, error, retry_after=retry_after, transient=transient)
        self._settled.add(change.change_ids)
        self.rt.ledger.retried(change, error)
        self.rt.metrics.failed(change.flow, type(error).__name__)

    def _dead(self, change: ClaimedChange, error: CrmsyncError) -> None:
        self.rt.queue.dead(change, error)
        self._settled.add(change.change_ids)
        self.rt.ledger.dead(change, error)
        try:  # one alert per flow while it has dead letters; a failed alert must not stop the worker
            dead_letter_alert(self.rt.alerter, change.flow, change.record_key, error)
        except Exception:
            log.exception("could not raise the dead-letter alert")
        self.rt.metrics.failed(change.flow, type(error).__name__)
        self.rt.metrics.dead_letter(change.flow)
