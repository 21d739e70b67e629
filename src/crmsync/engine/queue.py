"""The durable change queue: every trigger writes here before it is acknowledged.

A change row moves through four states::

                 claim (lease)                complete
    ┌─────────┐ ───────────────► ┌────────┐ ───────────► ┌──────┐
    │ pending │                  │ leased │              │ done │
    └─────────┘ ◄─────────────── └────────┘              └──────┘
         ▲        retry (later),      │  dead                 ┌──────┐
         │        release (now),      └─────────────────────► │ dead │ ──► one dead_letters row
         │        lease expiry                                └──────┘
         └──────────── replay (new change rows) ◄──────────────── dead_letters

Promises, on SQLite, PostgreSQL and MySQL/MariaDB alike:

- *Nothing lost*: :meth:`ChangeQueue.enqueue` commits before it returns. A worker that dies
  leaves its rows leased; when the lease runs out they are claimable again.
- *Nothing duplicated by the sender*: deliveries are de-duplicated by ``(source, delivery_id)``,
  also within one batch; a duplicate is counted, not stored, not an error.
- *Per-record order*: only the oldest unfinished change of a ``(flow, record_key)`` (its *head*)
  can be claimed, and its claimer folds every later pending change of that record into one
  :class:`ClaimedChange`. No other worker can hold a change of that record meanwhile.
- *Fencing*: :meth:`complete`, :meth:`retry`, :meth:`dead`, :meth:`release` and :meth:`extend`
  touch only rows still leased by the claimer, so a worker whose lease expired and was taken over
  changes nothing. Owners must be unique per claimer (e.g. ``host:pid:thread``).
- *Back of the line*: a retried change becomes available after an exponential back-off, so it
  never blocks other records; later changes of the same record wait behind it.
- *Events stay whole*: a change carrying its source's event metadata (``meta``: when, who, the
  action, the delivery id) is claimed on its own, never folded with the record's other changes,
  so a target keeping a history sees each event as it happened.

:class:`ChangeQueue` holds the transactions, the clock, the wake-ups of waiting workers, the
fencing of outcomes and the counts; the rest of the queue is in modules of their own, each working
in the transaction it is given:

- :mod:`crmsync.engine.queue_values`: the values it takes and hands out (:class:`NewChange`,
  :class:`ClaimedChange`...) and :func:`fold`, the net change of a record's changes;
- :mod:`crmsync.engine.queue_insert`: storing new changes, each delivery once;
- :mod:`crmsync.engine.queue_claim`: finding the records' heads, folding, leasing (and which
  index and locks a claim uses);
- :mod:`crmsync.engine.dead_letters`: writing, listing, replaying and discarding dead letters.

This module re-exports the values and :class:`DeadLetter`: callers import the queue from here.

Times come from ``clock`` (UTC), not from the database, so tests can move time without sleeping;
with several hosts, keep their clocks in sync (NTP).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from crmsync.engine import dead_letters as letters
from crmsync.engine.backoff import Backoff
from crmsync.engine.dead_letters import DeadLetter
from crmsync.engine.queue_claim import claim_records
from crmsync.engine.queue_insert import delivered, insert_groups
from crmsync.engine.queue_values import (
    UNFINISHED,
    ClaimedChange,
    EnqueueResult,
    NewChange,
    Operation,
    QueueStats,
    fold,
    in_chunks,
)
from crmsync.errors import CrmsyncError
from crmsync.store.db import Store
from crmsync.store.schema import changes as t_changes
from crmsync.store.schema import utcnow

__all__ = [
    "UNFINISHED",
    "ChangeQueue",
    "ClaimedChange",
    "DeadLetter",
    "EnqueueResult",
    "NewChange",
    "Operation",
    "QueueStats",
    "fold",
]

log = logging.getLogger(__name__)


class ChangeQueue:
    """The change queue over a :class:`Store`. Thread-safe; every method is one transaction."""

    def __init__(
        self,
        store: Store,
        *,
        lease_seconds: float = 60,
        backoff: Backoff = Backoff(),
        clock: Callable[[], datetime] = utcnow,
        max_fold: int = 1000,
    ) -> None:
        self.store = store
        self.lease_seconds = lease_seconds
        self.backoff = backoff
        self.clock = clock
        self.max_fold = max_fold
        self._locking = store.dialect != "sqlite"
        self._arrived = threading.Condition()

    # -- enqueue --------------------------------------------------------------------------------

    def enqueue(self, changes: Sequence[NewChange], *, conn: Connection | None = None) -> EnqueueResult:
        """Store ``changes`` in one transaction (committed on return unless ``conn`` is the
        caller's). Duplicates by ``(source, delivery_id)`` are counted and skipped."""
        for change in changes:
            if change.operation not in ("upsert", "delete"):
                raise ValueError(f"unknown operation {change.operation!r}: expected 'upsert' or 'delete'")
        if not changes:
            return EnqueueResult(0, 0)
        if conn is not None:
            return self._announce(self._enqueue(conn, changes))
        return self._announce(self.store.run(lambda c: self._enqueue(c, changes)))

    def enqueue_groups(
        self, groups: Sequence[Sequence[NewChange]], *, conn: Connection | None = None
    ) -> list[EnqueueResult]:
        """Store several requests' changes in one transaction (group commit), committed on return
        unless ``conn`` is the caller's (who then calls :meth:`wake` once it committed); one result
        per group, in order. A delivery id seen in an earlier group (or stored before) is a
        duplicate of the later group."""
        for group in groups:
            for change in group:
                if change.operation not in ("upsert", "delete"):
                    raise ValueError(f"unknown operation {change.operation!r}: expected 'upsert' or 'delete'")
        if not any(groups):
            return [EnqueueResult(0, 0) for _ in groups]
        if conn is not None:
            return self._enqueue_groups(conn, groups)
        results = self.store.run(lambda c: self._enqueue_groups(c, groups))
        for result in results:
            self._announce(result)
        return results

    def _announce(self, result: EnqueueResult) -> EnqueueResult:
        if result.accepted:
            self.wake()
        return result

    def wake(self) -> None:
        """Wake the workers of this process waiting in :meth:`wait_for_work`: work has arrived."""
        with self._arrived:
            self._arrived.notify_all()

    def wait_for_work(self, timeout: float) -> bool:
        """Wait until changes are queued through this queue object (this process: a webhook, an
        ingest request, a poller), or ``timeout`` seconds; True when woken by new work. Other
        processes' changes are found by the next look, at most ``timeout`` later."""
        with self._arrived:
            return self._arrived.wait(timeout)

    def _enqueue(self, conn: Connection, changes: Sequence[NewChange]) -> EnqueueResult:
        return self._enqueue_groups(conn, [changes])[0]

    def _enqueue_groups(self, conn: Connection, groups: Sequence[Sequence[NewChange]]) -> list[EnqueueResult]:
        return insert_groups(conn, self.store.dialect, groups, self.clock())

    def delivered(self, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of these ``(source, delivery_id)`` pairs are queued already (one read per chunk)."""
        if not keys:
            return set()
        with self.store.read() as conn:
            return delivered(conn, keys)

    # -- claim ----------------------------------------------------------------------------------

    def claim(
        self, owner: str, limit: int = 200, *, flows: Collection[str] | None = None
    ) -> list[ClaimedChange]:
        """Lease up to ``limit`` records' work to ``owner``, oldest available first."""
        if limit <= 0 or (flows is not None and not flows):
            return []
        return self.store.run(lambda c: self._claim(c, owner, limit, flows))

    def _claim(
        self, conn: Connection, owner: str, limit: int, flows: Collection[str] | None
    ) -> list[ClaimedChange]:
        return claim_records(
            conn,
            owner,
            limit,
            flows,
            now=self.clock(),
            lease_seconds=self.lease_seconds,
            max_fold=self.max_fold,
            locking=self._locking,
        )

    # -- outcomes -------------------------------------------------------------------------------

    def _fenced_update(
        self, conn: Connection, claimed: Sequence[ClaimedChange], values: dict[str, Any]
    ) -> int:
        c = t_changes.c
        changed = 0
        for owner in {cc.lease_owner for cc in claimed}:
            ids = [i for cc in claimed if cc.lease_owner == owner for i in cc.change_ids]
            for chunk in in_chunks(ids):
                result = conn.execute(
                    sa.update(t_changes)
                    .where(c.id.in_(chunk), c.state == "leased", c.lease_owner == owner)
                    .values(**values)
                )
                changed += result.rowcount
        if changed < sum(len(cc.change_ids) for cc in claimed):
            log.warning(
                "lease lost: %d of the claimed changes were taken over and left as they are",
                sum(len(cc.change_ids) for cc in claimed) - changed,
            )
        return changed

    def complete(self, claimed: Sequence[ClaimedChange]) -> None:
        """Mark the changes done (only rows still leased by their claimer)."""
        if not claimed:
            return
        now = self.clock()
        values = {"state": "done", "leased_until": None, "updated_at": now}
        self.store.run(lambda conn: self._fenced_update(conn, claimed, values))

    def retry(
        self,
        claimed: ClaimedChange,
        error: CrmsyncError,
        *,
        retry_after: float | None = None,
        transient: bool = False,
    ) -> None:
        """Back to pending after a back-off (at least ``retry_after`` seconds): the back of the line.
        ``transient``: the call carrying the change failed, not the change (see :meth:`hurry`)."""
        now = self.clock()
        delay = max(self.backoff.delay(claimed.attempts + 1), retry_after or 0.0)
        values = {
            "state": "pending",
            "attempts": t_changes.c.attempts + 1,
            "available_at": now + timedelta(seconds=delay),
            "lease_owner": None,
            "leased_until": None,
            "last_error": {**error.to_dict(), "transient": transient},
            "updated_at": now,
        }
        self.store.run(lambda conn: self._fenced_update(conn, [claimed], values))

    def dead(self, claimed: ClaimedChange, error: CrmsyncError) -> int:
        """Give up on the change: its rows become dead and one dead letter holds the net change
        and the error. Returns the dead letter's id, or 0 if the lease was lost (nothing written)."""
        now = self.clock()
        values = {"state": "dead", "leased_until": None, "last_error": error.to_dict(), "updated_at": now}

        def work(conn: Connection) -> int:
            if not self._fenced_update(conn, [claimed], values):
                return 0
            return letters.record(conn, claimed, error, now)

        return self.store.run(work)

    def release(self, claimed: Sequence[ClaimedChange], *, sent: bool = False) -> None:
        """Give the changes back without counting an attempt (their flow was paused): pending now,
        attempts unchanged. ``sent``: their write was sent, so it may have landed: the rows keep
        their lease's end (``leased_until``), and their next claim says they may have been applied
        (:attr:`ClaimedChange.maybe_applied`), as when a lease runs out. Changes given back before
        any write was sent are a first attempt again."""
        if not claimed:
            return
        now = self.clock()
        values: dict[str, Any] = {
            "state": "pending",
            "available_at": now,
            "lease_owner": None,
            "updated_at": now,
        }
        if not sent:
            values["leased_until"] = None
        self.store.run(lambda conn: self._fenced_update(conn, claimed, values))

    def extend(self, claimed: Sequence[ClaimedChange], seconds: float) -> set[int]:
        """Keep the lease ``seconds`` longer from now (a heartbeat for slow batches). Returns the
        ids of the rows still held; a row missing from it was taken over and must not be written."""
        if not claimed:
            return set()
        now = self.clock()
        until = now + timedelta(seconds=seconds)
        values = {"leased_until": until, "available_at": until, "updated_at": now}
        c = t_changes.c

        def work(conn: Connection) -> set[int]:
            self._fenced_update(conn, claimed, values)
            held: set[int] = set()
            for owner in {cc.lease_owner for cc in claimed}:
                ids = [i for cc in claimed if cc.lease_owner == owner for i in cc.change_ids]
                for chunk in in_chunks(ids):
                    query = sa.select(c.id).where(
                        c.id.in_(chunk), c.state == "leased", c.lease_owner == owner
                    )
                    held.update(int(i) for i in conn.execute(query).scalars())
            return held

        return self.store.run(work)

    def hurry(self, flows: Collection[str]) -> int:
        """Make the changes of ``flows`` that wait after a transient failure available now (their
        connection works again); returns how many. Changes refused for their own data are left."""
        if not flows:
            return 0
        now = self.clock()
        c = t_changes.c
        stmt = (
            sa.update(t_changes)
            .where(
                c.state == "pending",
                c.flow.in_(sorted(flows)),
                c.attempts > 0,
                c.available_at > now,
                sa.type_coerce(c.last_error, sa.Text).like('%"transient":true%'),
            )
            .values(available_at=now, updated_at=now)
        )
        return self.store.run(lambda conn: int(conn.execute(stmt).rowcount or 0))

    # -- observation ----------------------------------------------------------------------------

    def stats(self) -> QueueStats:
        c = t_changes.c
        now = self.clock()
        counts = {"pending": 0, "leased": 0}
        retrying = 0
        oldest: datetime | None = None
        with self.store.read() as conn:
            query = (
                sa.select(
                    c.state,
                    sa.func.count(),
                    sa.func.sum(sa.case((c.attempts > 0, 1), else_=0)),
                    sa.func.min(c.created_at),
                )
                .where(c.state.in_(UNFINISHED))
                .group_by(c.state)
            )
            for state, count, failed, first in conn.execute(query):
                counts[state] = int(count)
                if state == "pending":
                    retrying = int(failed or 0)
                if first is not None and (oldest is None or first < oldest):
                    oldest = first
            dead = letters.count_open(conn)
        age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else None
        return QueueStats(counts["pending"], counts["leased"], dead, retrying, age)

    def purge_done(self, older_than: timedelta) -> int:
        """Delete done changes last touched more than ``older_than`` ago; returns how many."""
        cutoff = self.clock() - older_than
        c = t_changes.c

        def work(conn: Connection) -> int:
            return conn.execute(sa.delete(t_changes).where(c.state == "done", c.updated_at < cutoff)).rowcount

        return self.store.run(work)

    # -- dead letters (crmsync.engine.dead_letters) ----------------------------------------------

    def dead_letters(
        self, *, flow: str | None = None, limit: int = 100, include_discarded: bool = False
    ) -> list[DeadLetter]:
        """Newest first."""
        with self.store.read() as conn:
            return letters.listing(conn, flow=flow, limit=limit, include_discarded=include_discarded)

    def dead_letter(self, id: int) -> DeadLetter | None:
        with self.store.read() as conn:
            return letters.get(conn, id)

    def replay(self, ids: Sequence[int]) -> int:
        """Enqueue the net change of each open dead letter again (new change rows, same fields, and
        the event's metadata when the letter holds one event) and mark the letters replayed.
        Letters already replayed or discarded are left alone. Returns how many were replayed."""
        if not ids:
            return 0
        now = self.clock()
        return self.store.run(lambda conn: letters.replay(conn, ids, now, locking=self._locking))

    def discard(self, ids: Sequence[int], reason: str | None = None) -> int:
        """Mark dead letters discarded (kept for the record, hidden from the default listing),
        with why when given."""
        if not ids:
            return 0
        now = self.clock()
        return self.store.run(lambda conn: letters.discard(conn, ids, reason, now))
