"""``SalesforcePoller``: the trigger that turns Salesforce changes into change rows.

The Salesforce connector's own polling cycle (:class:`~crmsync.connectors.polling.PollsItself`):
the engine hands it targets and a sink (its queue), and runs the loop. One cycle
(:meth:`SalesforcePoller.poll_once`), planned by :mod:`.poll_plan`::

    stored watermarks ─► one queryAll per object, a /deleted check per object once a minute
                      ─► Composite calls (≤25 subrequests, ≤5 of them queries)
                      ─► each page: its changes enqueued and the watermark advanced, in ONE
                         transaction
                      ─► next pages (nextRecordsUrl) and, after a full page of 2,000 rows, a
                         continuation query, in the next round of Composite calls

- *Nothing lost*: a watermark moves only in the transaction that stores the changes read up to
  it, so a crash re-reads rather than skips. Each query looks back ``overlap`` before the
  watermark, for transactions that commit after a later one stamped.
- *Late commits*: a row's SystemModstamp is taken before its transaction commits, so a long
  transaction or a bulk job can make a row visible with a stamp behind the watermark, past the
  short overlap. With ``lookback`` set, every ``sweep_every`` a *lookback sweep* re-reads the rows
  stamped in ``(watermark - lookback - sweep_every, watermark - overlap]`` (one more query
  subrequest per object, riding in the same Composite calls while they have query slots): a row
  that becomes visible up to ``lookback`` after its stamp is caught. Rows the poller has already
  stored (same record, stamp and values, remembered for the window) are skipped without a queue
  write; only the late ones are enqueued. After a restart the memory is empty and the first sweep
  leaves the dropping to the queue. A feed this poller started "now" is never swept before its
  start.
- *Nothing doubled*: rows read again carry the same delivery id (see :mod:`.poll_plan`); the queue
  drops a delivery id it has seen, so the overlap costs nothing.
- *Calls*: ⌈objects / 5⌉ Composite calls a cycle (Salesforce takes at most 5 query subrequests in
  one call); the ``/deleted`` checks (one per object, at most once a minute, because its windows
  have whole minutes) ride in the free slots of those calls. A busy object adds one query
  subrequest per 2,000 changed rows. The overlap is read again every cycle: when more than 2,000
  rows share the last ``overlap`` seconds before an object's watermark (a bulk load, then
  silence), that object costs one more query subrequest a cycle until a newer change moves its
  watermark.
- *First run*: with no stored watermark, ``start="now"`` begins at the poller's clock, from the
  start of the current second (changes made before are left to ``crmsync migrate``; a host clock
  ahead of Salesforce's only moves that start); ``start="beginning"`` reads every record once. The
  ``/deleted`` window always begins at the first cycle; records already in the recycle bin come
  from ``queryAll`` when starting from the beginning.
- *Errors*: :class:`~crmsync.errors.RetryLater` (and :class:`~crmsync.errors.BudgetExhausted`)
  ends the cycle; the next one resumes from the stored watermarks (a warning when it starts, a
  notice when polling recovers). A subrequest Salesforce refuses for good (a field that does not
  exist, ...) raises :class:`~crmsync.errors.Fatal` at the end of the cycle, after the other
  objects' changes are stored. :class:`~crmsync.errors.Fatal` from the connector is raised.

Echo suppression is not done here: the worker compares each change with the shadow state. Run one
poller per Salesforce connection (the watermarks are per connection and object); several would
only waste calls, never duplicate changes.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from crmsync.connectors.polling import ChangeSink, PolledChange, PollResult, PollTarget
from crmsync.connectors.salesforce.client import subrequest_error
from crmsync.connectors.salesforce.poll_plan import (
    PAGE_LIMIT,
    Feed,
    Subrequest,
    build_feeds,
    delete_delivery_id,
    deleted_subrequest,
    deletion_window,
    field_value,
    first_watermark,
    floor_minute,
    format_stamp,
    pack,
    poll_soql,
    query_subrequest,
    sweep_soql,
    typeofs,
    upsert_delivery_id,
)
from crmsync.connectors.stamps import parse_stamp
from crmsync.errors import CrmsyncError, Fatal, RetryLater
from crmsync.store import watermarks
from crmsync.store.db import Store
from crmsync.store.schema import utcnow

if TYPE_CHECKING:
    from crmsync.connectors.salesforce.connector import SalesforceConnector

__all__ = ["PollResult", "PollTarget", "SalesforcePoller", "sweep_settings"]

log = logging.getLogger(__name__)

Start = Literal["now", "beginning"]


@dataclass
class _FeedState:
    mark: str | None
    """the newest SystemModstamp stored (None: read from the beginning)"""
    deleted_mark: str
    """where the next ``/deleted`` window starts"""
    rows: int = 0
    """rows read by the current query and its next pages"""
    last: tuple[str, str] | None = None
    """(SystemModstamp, Id) of the last row read this cycle"""
    sweep_high: dt.datetime | None = None
    """the upper bound of this cycle's lookback sweep"""
    sweep_rows: int = 0
    sweep_last: tuple[str, str] | None = None


@dataclass
class _Cycle:
    calls: int = 0
    duplicates: int = 0
    per_target: Counter[PollTarget] = field(default_factory=Counter)
    fatal: CrmsyncError | None = None
    late: int = 0
    swept: int = 0

    def result(
        self, targets: Sequence[PollTarget], *, skipped: bool = False, retry_after: float | None = None
    ) -> PollResult:
        per_target = {t: self.per_target[t] for t in targets}
        return PollResult(
            sum(per_target.values()),
            self.calls,
            per_target,
            self.duplicates,
            skipped,
            self.late,
            self.swept,
            retry_after,
        )


class SalesforcePoller:
    """Polls one Salesforce connection for the changes of ``targets``."""

    def __init__(
        self,
        connector: SalesforceConnector,
        queue: ChangeSink,
        store: Store,
        targets: Sequence[PollTarget],
        *,
        overlap: dt.timedelta = dt.timedelta(seconds=2),
        clock: Callable[[], dt.datetime] = utcnow,
        start: Start = "now",
        page_limit: int = PAGE_LIMIT,
        lookback: dt.timedelta | None = None,
        sweep_every: dt.timedelta = dt.timedelta(seconds=60),
    ) -> None:
        if lookback is not None and lookback <= overlap:
            raise ValueError("lookback must be longer than overlap (the fast poll reads the overlap)")
        if sweep_every <= dt.timedelta(0):
            raise ValueError("sweep_every must be positive")
        if overlap <= dt.timedelta(0):
            raise ValueError("overlap must be positive (rows stamped with the watermark are read again)")
        if start not in ("now", "beginning"):
            raise ValueError(f"start must be 'now' or 'beginning', not {start!r}")
        if not 1 <= page_limit <= PAGE_LIMIT:
            raise ValueError(f"page_limit must be between 1 and {PAGE_LIMIT}")
        others = sorted({t.connection for t in targets} - {connector.name})
        if others:
            raise ValueError(
                f"this poller reads the connection {connector.name!r}; targets name {', '.join(others)}"
            )
        self.connector = connector
        self.queue = queue
        self.store = store
        self.targets = tuple(targets)
        self.feeds = build_feeds(self.targets)
        self._typed = False
        self.overlap = overlap
        self.clock = clock
        self.start = start
        self.page_limit = page_limit
        self.lookback = lookback
        self.sweep_every = sweep_every
        self._next_sweep: dt.datetime | None = None
        #: per object: SystemModstamp -> delivery ids stored (the lookback sweep's memory)
        self._seen: dict[str, dict[str, set[str]]] = {feed.object_name: {} for feed in self.feeds}
        #: per object started "now" by this poller: the sweep reads nothing stamped before the start
        self._floor: dict[str, dt.datetime] = {}
        self._skips = 0
        self._retry_after: float | None = None

    @property
    def connection(self) -> str:
        return self.connector.name

    # -- the cycle ----------------------------------------------------------------------------
    def poll_once(self) -> PollResult:
        """One cycle: read every target's changes since its watermark and store them."""
        cycle = _Cycle()
        try:
            self._poll(cycle)
        except RetryLater as exc:
            if self._skips == 0:
                log.warning("polling %s paused, retried every cycle: %s", self.connection, exc)
            else:
                log.debug("polling %s still paused: %s", self.connection, exc)
            self._skips += 1
            self._retry_after = exc.retry_after
            return cycle.result(self.targets, skipped=True, retry_after=exc.retry_after)
        if self._skips:
            log.info("polling %s resumed after %d skipped cycles", self.connection, self._skips)
            self._skips = 0
        if cycle.fatal is not None:
            raise cycle.fatal
        return cycle.result(self.targets)

    def _poll(self, cycle: _Cycle) -> None:
        if not self._typed:  # polymorphic relationships read through TYPEOF, from the describes
            describe = self.connector.describe
            self.feeds = [replace(f, typeofs=typeofs(f, describe)) if f.related else f for f in self.feeds]
            self._typed = True
        now = self.clock()
        states = self._load(now)
        pending = [
            query_subrequest(i, poll_soql(feed, since=self._since(states[i].mark), limit=self.page_limit))
            for i, feed in enumerate(self.feeds)
        ]
        for i, feed in enumerate(self.feeds):
            mark = parse_stamp(states[i].deleted_mark)
            window = deletion_window(mark, now)
            if window is None:
                continue
            if window[0] > floor_minute(mark):
                log.warning(
                    "%s %s deletions before %s are past Salesforce's retention (polled up to %s): "
                    "deletions may be lost; run a full resync of %s",
                    self.connection,
                    feed.object_name,
                    format_stamp(window[0]),
                    states[i].deleted_mark,
                    _flows(feed),
                )
            pending.append(deleted_subrequest(i, feed.object_name, *window))
        pending.extend(self._sweeps(now, states))
        while pending:
            follow: list[Subrequest] = []
            for call in pack(pending):
                requests = [
                    {"method": "GET", "url": sub.url, "referenceId": f"r{n}"} for n, sub in enumerate(call)
                ]
                replies = self.connector.client.composite(requests, all_or_none=False)
                cycle.calls += 1
                for sub, reply in zip(call, replies, strict=True):
                    after = self._handle(sub, reply, states[sub.feed], cycle)
                    if after is not None:
                        follow.append(after)
            pending = follow

    def _sweeps(self, now: dt.datetime, states: Sequence[_FeedState]) -> list[Subrequest]:
        """The lookback sweep's queries when one is due (the first one ``sweep_every`` after the
        first cycle); forgets remembered rows older than any sweep reads."""
        if self.lookback is None:
            return []
        reach = self.lookback + self.sweep_every
        for feed, state in zip(self.feeds, states, strict=True):
            if state.mark is not None:
                cutoff = format_stamp(parse_stamp(state.mark) - reach - self.overlap)
                seen = self._seen[feed.object_name]
                for stamp in [s for s in seen if s < cutoff]:
                    del seen[stamp]
        if self._next_sweep is None:
            self._next_sweep = now + self.sweep_every
            return []
        if now < self._next_sweep:
            return []
        self._next_sweep = now + self.sweep_every
        subs = []
        for i, (feed, state) in enumerate(zip(self.feeds, states, strict=True)):
            if state.mark is None:
                continue  # reading from the beginning: the fast query reads everything
            mark = parse_stamp(state.mark)
            state.sweep_high = mark - self.overlap
            low = mark - reach
            floor = self._floor.get(feed.object_name)
            if floor is not None and floor > low:
                low = floor  # started "now": what came before is left to ``crmsync migrate``
            if low >= state.sweep_high:
                continue
            soql = sweep_soql(feed, low=low, high=state.sweep_high, limit=self.page_limit)
            subs.append(query_subrequest(i, soql, "sweep"))
        return subs

    def _since(self, mark: str | None) -> dt.datetime | None:
        return None if mark is None else parse_stamp(mark) - self.overlap

    def _load(self, now: dt.datetime) -> list[_FeedState]:
        """Each feed's watermarks; those not stored yet are set (``start``) and stored."""

        def work(conn: Connection) -> list[_FeedState]:
            states = []
            for feed in self.feeds:
                mark = watermarks.get(conn, self.connection, feed.object_name)
                if mark is None and self.start == "now":
                    mark = first_watermark(now, self.overlap)
                    watermarks.put(conn, self.connection, feed.object_name, mark)
                    self._floor[feed.object_name] = parse_stamp(mark) - self.overlap
                deleted_mark = watermarks.get(conn, self.connection, feed.deleted_key)
                if deleted_mark is None:
                    deleted_mark = format_stamp(floor_minute(now))
                    watermarks.put(conn, self.connection, feed.deleted_key, deleted_mark)
                states.append(_FeedState(mark, deleted_mark))
            return states

        return self.store.run(work)

    def _handle(
        self, sub: Subrequest, reply: Mapping[str, Any], state: _FeedState, cycle: _Cycle
    ) -> Subrequest | None:
        """Store one subrequest's changes; the subrequest that reads on, if any."""
        feed = self.feeds[sub.feed]
        error = subrequest_error(reply, object_name=feed.object_name)
        if error is not None:
            self._refused(feed, sub, error, cycle)
            return None
        body = reply.get("body")
        body = body if isinstance(body, dict) else {}
        if sub.kind == "deleted":
            self._store_deletions(feed, state, body, cycle)
            return None
        if sub.kind in ("sweep", "sweep_more"):
            return self._handle_sweep(sub, body, state, cycle)
        if sub.kind == "query":
            state.rows = 0
        records = [r for r in body.get("records") or [] if isinstance(r, dict)]
        self._store_rows(feed, state, records, cycle)
        state.rows += len(records)
        next_url = body.get("nextRecordsUrl")
        if not body.get("done", True) and next_url:
            return Subrequest("more", sub.feed, str(next_url))
        if state.rows >= self.page_limit and state.last is not None:
            # a full page: more rows may follow, perhaps with the same stamp as the last one
            after = (parse_stamp(state.last[0]), state.last[1])
            return query_subrequest(sub.feed, poll_soql(feed, after=after, limit=self.page_limit))
        return None

    def _handle_sweep(
        self, sub: Subrequest, body: Mapping[str, Any], state: _FeedState, cycle: _Cycle
    ) -> Subrequest | None:
        feed = self.feeds[sub.feed]
        if sub.kind == "sweep":
            state.sweep_rows = 0
        records = [r for r in body.get("records") or [] if isinstance(r, dict)]
        self._store_swept(feed, records, cycle)
        state.sweep_rows += len(records)
        if records:
            state.sweep_last = (str(records[-1].get("SystemModstamp")), str(records[-1].get("Id")))
        next_url = body.get("nextRecordsUrl")
        if not body.get("done", True) and next_url:
            return Subrequest("sweep_more", sub.feed, str(next_url))
        if state.sweep_rows >= self.page_limit and state.sweep_last is not None and state.sweep_high:
            after = (parse_stamp(state.sweep_last[0]), state.sweep_last[1])
            soql = sweep_soql(feed, low=after[0], high=state.sweep_high, after=after, limit=self.page_limit)
            return query_subrequest(sub.feed, soql, "sweep")
        return None

    def _refused(self, feed: Feed, sub: Subrequest, error: CrmsyncError, cycle: _Cycle) -> None:
        if isinstance(error, RetryLater):
            log.warning("polling %s %s: %s; retried next cycle", self.connection, feed.object_name, error)
            return
        log.error("Salesforce refused to poll %s %s: %s", self.connection, feed.object_name, error)
        if cycle.fatal is None:
            cycle.fatal = (
                error
                if isinstance(error, Fatal)
                else Fatal(
                    f"Salesforce refused to poll {feed.object_name} ({sub.kind}) for {_flows(feed)}: "
                    f"{error.message}",
                    url=error.url,
                    object_name=feed.object_name,
                    vendor_code=error.vendor_code,
                    status=error.status,
                )
            )

    # -- changes ------------------------------------------------------------------------------
    def _store_rows(
        self, feed: Feed, state: _FeedState, rows: Sequence[Mapping[str, Any]], cycle: _Cycle
    ) -> None:
        changes: dict[PollTarget, list[PolledChange]] = {t: [] for t in feed.targets}
        newest = parse_stamp(state.mark) if state.mark is not None else None
        mark = state.mark
        for row in rows:
            record_id, stamp = str(row.get("Id")), str(row.get("SystemModstamp"))
            for target, change in self._row_changes(feed, row):
                changes[target].append(change)
            state.last = (stamp, record_id)
            parsed = parse_stamp(stamp)
            if newest is None or parsed > newest:
                newest, mark = parsed, stamp
        self._commit(changes, feed.object_name, mark if mark != state.mark else None, cycle)
        state.mark = mark

    def _row_changes(self, feed: Feed, row: Mapping[str, Any]) -> list[tuple[PollTarget, PolledChange]]:
        """One queried row's change for each target (remembered for the lookback sweep)."""
        record_id, stamp = str(row.get("Id")), str(row.get("SystemModstamp"))
        deleted = bool(row.get("IsDeleted"))
        out = []
        for target in feed.targets:
            tag = target.flow if feed.shared else None
            if deleted:
                delivery = delete_delivery_id(record_id, tag)
                change = PolledChange(self.connection, target.flow, record_id, "delete", {}, delivery)
            else:
                values = {name: field_value(row, name) for name in target.fields}
                if target.stamped:
                    values["_at"] = stamp
                delivery = upsert_delivery_id(record_id, stamp, values, tag)
                change = PolledChange(self.connection, target.flow, record_id, "upsert", values, delivery)
            out.append((target, change))
        if self.lookback is not None:
            self._seen[feed.object_name].setdefault(stamp, set()).update(
                c.delivery_id for _, c in out if c.delivery_id
            )
        return out

    def _store_swept(self, feed: Feed, rows: Sequence[Mapping[str, Any]], cycle: _Cycle) -> None:
        """The lookback sweep's rows: those stored already are skipped without a write."""
        seen = self._seen[feed.object_name]
        changes: dict[PollTarget, list[PolledChange]] = {t: [] for t in feed.targets}
        for row in rows:
            known = set(seen.get(str(row.get("SystemModstamp")), ()))
            fresh = [(t, c) for t, c in self._row_changes(feed, row) if c.delivery_id not in known]
            cycle.swept += len(feed.targets) - len(fresh)
            for target, change in fresh:
                changes[target].append(change)
        found = sum(len(batch) for batch in changes.values())
        if not found:
            return
        before = sum(cycle.per_target.values())
        self._commit(changes, feed.object_name, None, cycle)
        late = sum(cycle.per_target.values()) - before
        cycle.late += late
        if late:
            log.info(
                "polling %s %s: the lookback sweep found %d changes that committed late",
                self.connection,
                feed.object_name,
                late,
            )

    def _store_deletions(self, feed: Feed, state: _FeedState, body: Mapping[str, Any], cycle: _Cycle) -> None:
        mark = parse_stamp(state.deleted_mark)
        earliest = body.get("earliestDateAvailable")
        if earliest and parse_stamp(str(earliest)) > mark:
            log.warning(
                "%s %s deletions before %s are no longer listed by Salesforce (polled up to %s): "
                "deletions may be lost; run a full resync of %s",
                self.connection,
                feed.object_name,
                earliest,
                state.deleted_mark,
                _flows(feed),
            )
        changes: dict[PollTarget, list[PolledChange]] = {t: [] for t in feed.targets}
        for item in body.get("deletedRecords") or []:
            record_id = item.get("id") if isinstance(item, dict) else None
            if not record_id:
                continue
            for target in feed.targets:
                delivery = delete_delivery_id(str(record_id), target.flow if feed.shared else None)
                changes[target].append(
                    PolledChange(self.connection, target.flow, str(record_id), "delete", {}, delivery)
                )
        covered = body.get("latestDateCovered")
        new_mark = str(covered) if covered and parse_stamp(str(covered)) > mark else None
        self._commit(changes, feed.deleted_key, new_mark, cycle)
        if new_mark is not None:
            state.deleted_mark = new_mark

    def _commit(
        self, changes: Mapping[PollTarget, Sequence[PolledChange]], key: str, mark: str | None, cycle: _Cycle
    ) -> None:
        """Enqueue ``changes`` and store the watermark ``mark`` (if any) in one transaction."""
        if mark is None and not any(changes.values()):
            return

        def work(conn: Connection) -> dict[PollTarget, tuple[int, int]]:
            counts = {}
            for target, batch in changes.items():
                result = self.queue.enqueue(batch, conn=conn)
                counts[target] = (result.accepted, result.duplicates)
            if mark is not None:
                watermarks.put(conn, self.connection, key, mark)
            return counts

        for target, (accepted, duplicates) in self.store.run(work).items():
            cycle.per_target[target] += accepted
            cycle.duplicates += duplicates

    # -- the loop -----------------------------------------------------------------------------
    def run(self, stop: threading.Event, interval: float) -> None:
        """Poll every ``interval`` seconds until ``stop`` is set; Fatal errors are raised.

        A transient error skips the cycle (a budget error with ``retry_after`` waits at least
        that long); an unreachable store does too: its watermarks did not move.
        """
        store_down = False
        while not stop.is_set():
            began = time.monotonic()
            wait = interval
            try:
                result = self.poll_once()
            except DBAPIError as exc:
                if not store_down:
                    log.warning("polling %s paused, the store is unreachable: %s", self.connection, exc)
                store_down = True
            else:
                if store_down:
                    log.info("polling %s resumed: the store is back", self.connection)
                store_down = False
                if result.skipped and self._retry_after:
                    wait = max(interval, self._retry_after)
                log.debug("polled %s: %d changes, %d calls", self.connection, result.changes, result.calls)
            stop.wait(max(0.0, wait - (time.monotonic() - began)))


def sweep_settings(lookback_seconds: float, sweep_every_seconds: float) -> dict[str, Any]:
    """The poller's ``lookback``/``sweep_every`` from a connection's settings (0: no sweep)."""
    return {
        "lookback": dt.timedelta(seconds=lookback_seconds) if lookback_seconds > 0 else None,
        "sweep_every": dt.timedelta(seconds=sweep_every_seconds),
    }


def _flows(feed: Feed) -> str:
    return ", ".join(sorted({t.flow for t in feed.targets}))
