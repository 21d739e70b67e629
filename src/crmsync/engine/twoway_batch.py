"""The worker's path for two-way flows: a claimed batch's changes planned together, written in batches.

Each change is planned by :meth:`~crmsync.engine.twoway.TwoWay.plan` (news, conflicts, the
decision: exactly what applying it alone decides), and its writes of one object are sent with
those of the other changes in one ``write_batch`` call (a Salesforce sObject Collections call, one
aliased monday mutation), at most ``max_batch_size`` (or ``worker.two_way_batch_size``) a call.

The batch is applied in *waves*. A wave holds at most one change of each record pair (a source
record and the target record linked to it), so planning one change never depends on another of
the same wave; a later change of a pair already in the wave (the other side's change of the same
record) waits for the next wave, which is planned once the wave before is written and
remembered. Each pair's changes are thus applied in the order they were claimed, as one at a time.

::

    wave ──► plan each change ─────────► its writes, by (connection, object), ≤ max_batch_size a call
               │ done while planning          │ per record
               │ (a creation, a skip)         ├─ ok (its last write) ─► finish: shadows remembered,
               ▼                              │                         completed, logged
             finish                           ├─ FixTheData ──────────► dead letter
                                              ├─ RetryLater ──────────► retried (a whole call: not
                                              │                         counted; the vendor is down)
                                              └─ Fatal ───────────────► the flow paused, its changes
                                                                        released

One record's failure never holds back another: an exception while planning a change is that
change's alone, a record the vendor refuses is a result of its own, and a call failing for a
reason nobody foresaw is sent again one record a call, so that only the record causing it fails.
A change whose lease was lost (:class:`~crmsync.engine.worker.Heartbeat`) is not written.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from crmsync.connectors.capabilities import Writable, require
from crmsync.engine.flows import FlowRuntime
from crmsync.engine.queue import ClaimedChange
from crmsync.engine.twoway import Plan
from crmsync.errors import CrmsyncError, Fatal, FixTheData, RetryLater, Unexpected
from crmsync.store import links

if TYPE_CHECKING:
    from crmsync.engine.worker import BatchOutcome, Worker

log = logging.getLogger(__name__)

#: a group of writes: (connection, object)
Group = tuple[str, str]


@dataclass
class _Going:
    """A planned change on its way: ``done`` of its writes landed so far."""

    change: ClaimedChange
    written: str  # the connection it writes to (the other side's)
    plan: Plan
    done: int = 0
    over: bool = False  # failed, or taken from this worker: nothing more is written

    @property
    def next(self) -> Group:
        step = self.plan.writes[self.done]
        return (step.connection, step.object_name)

    @property
    def left(self) -> list[Group]:
        return [(s.connection, s.object_name) for s in self.plan.writes[self.done :]]


class TwoWayBatch:
    """One flow's claimed changes, applied in waves; the outcomes go through the worker's."""

    def __init__(self, worker: Worker, flow: FlowRuntime, outcome: BatchOutcome) -> None:
        self.worker = worker
        self.rt = worker.rt
        self.flow = flow
        self.outcome = outcome
        self.changes: Sequence[ClaimedChange] = ()
        self.paused = False
        #: connections a whole call to failed transiently in this batch: not called again now
        self.down: dict[str, RetryLater] = {}

    def run(self, changes: Sequence[ClaimedChange]) -> BatchOutcome:
        self.changes = changes
        for wave in self.waves(changes):
            going: list[_Going] = []
            for change in wave:
                if self.paused:
                    return self.outcome
                if self._gone(change):
                    continue
                written = self.flow.target if change.source == self.flow.source else self.flow.source
                self.worker._sent.add(change.change_ids)  # planning may write already (a creation)
                try:
                    plan = self.rt.twoway.plan(self.flow, change)
                except SQLAlchemyError:
                    raise  # the store is away: the loop waits, the leases expire, nothing is lost
                except Exception as exc:
                    self._failed(change, written, exc)
                    continue
                if plan.writes:
                    going.append(_Going(change, written, plan))
                else:
                    self._finish([_Going(change, written, plan)])
            self._write(going)
            if self.paused:
                break
        return self.outcome

    # -- waves ---------------------------------------------------------------------------------------
    def waves(self, changes: Sequence[ClaimedChange]) -> list[list[ClaimedChange]]:
        """The changes in waves, in claim order, at most one change of each record pair a wave."""
        flow = self.flow
        reverse = [c.record_key for c in changes if c.source != flow.source]
        sources = links.sources_of(self.rt.store, flow.name, flow.target, reverse) if reverse else {}
        waves: list[list[ClaimedChange]] = []
        seen: dict[tuple[str, str], int] = {}
        for change in changes:
            if change.source == flow.source:
                pair = ("source", change.record_key)
            elif change.record_key in sources:
                pair = ("source", sources[change.record_key])
            else:
                pair = ("target", change.record_key)
            n = seen.get(pair, -1) + 1
            seen[pair] = n
            if n == len(waves):
                waves.append([])
            waves[n].append(change)
        return waves

    # -- writes --------------------------------------------------------------------------------------
    def _write(self, going: list[_Going]) -> None:
        """Send the planned writes group by group; a change's writes go in its plan's order."""
        while not self.paused:
            going = [g for g in going if not g.over and g.done < len(g.plan.writes)]
            if not going:
                return
            group = self._next_group(going)
            members = [g for g in going if g.next == group]
            size = self._batch_size(group, members)
            for start in range(0, len(members), size):
                self._send(group, members[start : start + size])
                if self.paused:
                    return

    @staticmethod
    def _next_group(going: Sequence[_Going]) -> Group:
        """The next group to send: one no change still has to wait for (a later write of it), so
        that each object is written once for all the changes that write it, when their order allows."""
        later = {g for one in going for g in one.left[1:]}
        for one in going:
            if one.next not in later:
                return one.next
        return going[0].next

    def _batch_size(self, group: Group, members: Sequence[_Going]) -> int:
        limit = self.rt.config.worker.two_way_batch_size
        try:
            writer = require(self.rt.connector(group[0]), Writable, f"a write to {group[1]}")
            most = writer.max_batch_size(group[1])
        except CrmsyncError:  # the send says why, for each of its changes
            most = len(members)
        return max(1, min(most, limit or most, len(members)))

    def _send(self, group: Group, members: Sequence[_Going]) -> None:
        connection, object_name = group
        members = [g for g in members if not self._gone(g.change, g)]
        if not members:
            return
        if connection in self.down:
            self._wait(members, self.down[connection])
            return
        writes = [g.plan.writes[g.done].write for g in members]
        try:
            writer = require(self.rt.connector(connection), Writable, f"a write to {object_name}")
            results = writer.write_batch(object_name, writes)
        except SQLAlchemyError:
            raise
        except Exception as exc:
            if isinstance(exc, Fatal):
                self._pause(connection, exc)
            elif isinstance(exc, RetryLater) and not isinstance(exc, Unexpected):
                # the call failed (the vendor down, a rate limit), not its records: none is counted
                self.rt.health.down(connection, exc)
                self.down[connection] = exc
                self._wait(members, exc)
            elif len(members) > 1:  # a reason nobody foresaw: only the record causing it must fail
                self._one_by_one(group, members, exc)
            else:
                self._failed(members[0].change, connection, exc, members[0])
            return
        landed: list[_Going] = []
        failed: list[tuple[_Going, CrmsyncError]] = []
        for g, write, result in zip(members, writes, results, strict=True):
            if result.ok:
                g.done += 1
                landed.append(g)
            else:
                refused = FixTheData(f"{write.operation} refused", object_name=object_name, record=write.key)
                failed.append((g, result.error or refused))
        if landed:
            self.rt.health.working(connection)
            self._finish([g for g in landed if g.done == len(g.plan.writes)])
        for g, error in failed:
            if self.paused:
                return
            self._failed(g.change, connection, error, g)

    def _wait(self, members: Sequence[_Going], exc: RetryLater) -> None:
        """Retried later, not counted: a whole call to their connection failed."""
        for g in members:
            g.over = True
            self.worker._retry(g.change, exc, transient=True)
        self.outcome.retried += len(members)

    def _one_by_one(self, group: Group, members: Sequence[_Going], exc: BaseException) -> None:
        log.warning(
            "flow %s: unexpected %s writing %d records to %s; writing them one by one",
            self.flow.name,
            type(exc).__name__,
            len(members),
            group[1],
        )
        for g in members:
            if self.paused:
                return
            self._send(group, [g])

    # -- outcomes ------------------------------------------------------------------------------------
    def _finish(self, finished: Sequence[_Going]) -> None:
        """Changes whose writes all landed: each remembered and logged in turn, then all completed."""
        done: list[ClaimedChange] = []
        applied: list[ClaimedChange] = []
        for g in finished:
            try:
                what = g.plan.finish()
            except SQLAlchemyError:
                raise
            except Exception as exc:
                self._failed(g.change, g.written, exc, g)
                continue
            g.over = True
            self.rt.health.working(g.written)
            if what.skipped:
                self.rt.ledger.skipped(self.flow, g.change, what.message)
                self.outcome.skipped += 1
            else:
                self.rt.ledger.applied_one(self.flow, g.change, what.message, operation=what.operation)
                applied.append(g.change)
            done.append(g.change)
        if applied:
            self.outcome.applied += len(applied)
            self.rt.metrics.applied(self.flow.name, len(applied), [c.created_at for c in applied])
        if done:
            self.worker._complete(done)

    def _failed(
        self, change: ClaimedChange, written: str, exc: BaseException, going: _Going | None = None
    ) -> None:
        """One change failed, planning or writing it: as it would have alone."""
        if going is not None:
            going.over = True
        if isinstance(exc, FixTheData):
            self.worker._dead(change, exc)
            self.outcome.dead += 1
        elif isinstance(exc, Fatal):
            self._pause(written, exc)
        elif isinstance(exc, Unexpected):
            self.worker._retry(change, exc)
            self.outcome.retried += 1
        elif isinstance(exc, RetryLater):  # the call failed (vendor down, rate limit): not the record's fault
            self.rt.health.down(written, exc)
            self.worker._retry(change, exc, transient=True)
            self.outcome.retried += 1
        elif isinstance(exc, CrmsyncError):
            self.worker._retry(change, exc)
            self.outcome.retried += 1
        else:
            log.exception("flow %s: unexpected error applying %r", self.flow.name, change.record_key)
            self.worker._retry(change, Unexpected.wrap(exc))
            self.outcome.retried += 1

    def _pause(self, connection: str, exc: CrmsyncError) -> None:
        """A person must act: the flow is paused, every change of it not settled yet released."""
        rest = [c for c in self.changes if c.change_ids not in self.worker._settled]
        self.worker._pause(self.flow, connection, rest, exc)
        self.outcome.retried += len(rest)
        self.paused = True

    def _gone(self, change: ClaimedChange, going: _Going | None = None) -> bool:
        """Settled already, or taken over by another worker (its lease was lost): not written here."""
        if change.change_ids not in self.worker._settled and not self.worker._lost(change):
            return False
        self.worker._settled.add(change.change_ids)
        if going is not None:
            going.over = True
        return True
