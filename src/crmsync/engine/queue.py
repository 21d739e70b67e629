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

While a row is leased its ``available_at`` holds the lease expiry, so one index,
``(state, available_at, id)``, finds both pending work and expired leases in claim order. Claims
lock heads with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL and MariaDB, so concurrent workers take
different records; on SQLite the write transaction (``BEGIN IMMEDIATE``) serializes claims.

Times come from ``clock`` (UTC), not from the database, so tests can move time without sleeping;
with several hosts, keep their clocks in sync (NTP).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from crmsync.connectors.base import EventMeta
from crmsync.engine.backoff import Backoff
from crmsync.errors import CrmsyncError
from crmsync.store.db import Store
from crmsync.store.schema import changes as t_changes
from crmsync.store.schema import dead_letters as t_dead
from crmsync.store.schema import utcnow

log = logging.getLogger(__name__)

Operation = Literal["upsert", "delete"]
UNFINISHED = ("pending", "leased")
_CHUNK = 500  # ids or keys per IN (...) list


@dataclass(frozen=True)
class NewChange:
    """A change as a trigger reports it."""

    source: str
    flow: str
    record_key: str
    operation: Operation
    fields: Mapping[str, Any]
    delivery_id: str | None = None
    #: what the source said of the event behind the change (travels to the target's write)
    meta: EventMeta | None = None


@dataclass(frozen=True)
class EnqueueResult:
    accepted: int
    duplicates: int


@dataclass(frozen=True)
class ClaimedChange:
    """One record's coalesced work, leased to ``lease_owner``."""

    change_ids: tuple[int, ...]
    source: str
    flow: str
    record_key: str
    operation: Operation
    fields: Mapping[str, Any]
    attempts: int
    created_at: datetime
    lease_owner: str
    #: the event behind the change (a change with one is never folded with others)
    meta: EventMeta | None = None
    #: the changes folded into this one, oldest first (operation, payload, queued at), when there
    #: were several: each field's value came from one of them, and happened when that one did
    parts: tuple[tuple[Operation, Mapping[str, Any], datetime], ...] = ()
    #: its last lease ended without an outcome once the worker holding it may have written it: the
    #: lease ran out, or the change was given back after its write was sent (``release(sent=True)``)
    reclaimed: bool = False

    @property
    def maybe_applied(self) -> bool:
        """Whether an earlier attempt may have written this change already (it was tried before,
        claimed again after its lease ran out, or given back after its write was sent): its writes
        say so (``Write.maybe_applied``)."""
        return self.attempts > 0 or self.reclaimed


@dataclass(frozen=True)
class QueueStats:
    """``pending`` and ``leased`` count change rows; ``retrying`` the pending rows that failed
    before; ``dead`` the open dead letters (neither replayed nor discarded);
    ``oldest_pending_age`` the age in seconds of the oldest change not yet done."""

    pending: int
    leased: int
    dead: int
    retrying: int
    oldest_pending_age: float | None


@dataclass(frozen=True)
class DeadLetter:
    id: int
    change_ids: tuple[int, ...]
    source: str
    flow: str
    record_key: str
    operation: Operation
    fields: Mapping[str, Any]
    error: Mapping[str, Any]
    attempts: int
    created_at: datetime
    replay_requested_at: datetime | None
    discarded_at: datetime | None
    discard_reason: str | None = None


def fold(rows: Iterable[tuple[str, Mapping[str, Any]]]) -> tuple[Operation, dict[str, Any]]:
    """The net effect of a record's changes, oldest first: upserts merge (later wins), a delete
    wipes the fields, an upsert after a delete starts afresh."""
    operation: Operation | None = None
    fields: dict[str, Any] = {}
    for op, payload in rows:
        if op == "delete":
            operation, fields = "delete", {}
        elif operation == "upsert":
            fields.update(payload)
        else:
            operation, fields = "upsert", dict(payload)
    if operation is None:
        raise ValueError("nothing to fold")
    return operation, fields


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


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
        seen: set[tuple[str, str]] = set()
        unique: list[tuple[int, NewChange]] = []
        for index, changes in enumerate(groups):
            for change in changes:
                if change.delivery_id is not None:
                    key = (change.source, change.delivery_id)
                    if key in seen:
                        continue
                    seen.add(key)
                unique.append((index, change))
        now = self.clock()
        if self.store.dialect == "postgresql":
            return self._insert_new(conn, groups, unique, now)
        for attempt in range(5):
            existing = self._delivered(conn, seen)
            kept = [
                (index, change)
                for index, change in unique
                if change.delivery_id is None or (change.source, change.delivery_id) not in existing
            ]
            try:
                if kept:
                    with conn.begin_nested():
                        conn.execute(sa.insert(t_changes), [self._row(change, now) for _, change in kept])
            except IntegrityError:
                # A concurrent transaction committed one of these deliveries after we looked.
                if attempt == 4:
                    raise
                continue
            accepted = [0] * len(groups)
            for index, _ in kept:
                accepted[index] += 1
            return [EnqueueResult(n, len(group) - n) for n, group in zip(accepted, groups, strict=True)]
        raise AssertionError("unreachable")

    def _insert_new(
        self,
        conn: Connection,
        groups: Sequence[Sequence[NewChange]],
        unique: Sequence[tuple[int, NewChange]],
        now: datetime,
    ) -> list[EnqueueResult]:
        """PostgreSQL: one ``INSERT … ON CONFLICT DO NOTHING RETURNING`` stores the changes whose
        delivery id is new and names them; no look-up first and no savepoint. A concurrent
        transaction inserting the same delivery id makes this one wait for its outcome: committed,
        ours is the duplicate; rolled back, ours is stored."""
        c = t_changes.c
        statement = (
            pg_insert(t_changes)
            .on_conflict_do_nothing(index_elements=[c.source, c.delivery_id])
            .returning(c.source, c.delivery_id)
        )
        stored = {
            (r.source, r.delivery_id)
            for r in conn.execute(statement, [self._row(ch, now) for _, ch in unique])
        }
        accepted = [0] * len(groups)
        for index, change in unique:
            if change.delivery_id is None or (change.source, change.delivery_id) in stored:
                accepted[index] += 1
        return [EnqueueResult(n, len(group) - n) for n, group in zip(accepted, groups, strict=True)]

    def delivered(self, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of these ``(source, delivery_id)`` pairs are queued already (one read per chunk)."""
        if not keys:
            return set()
        with self.store.read() as conn:
            return self._delivered(conn, keys)

    def _delivered(self, conn: Connection, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of these (source, delivery_id) pairs are already stored."""
        by_source: dict[str, list[str]] = {}
        for source, delivery_id in keys:
            by_source.setdefault(source, []).append(delivery_id)
        found: set[tuple[str, str]] = set()
        c = t_changes.c
        for source, ids in by_source.items():
            for chunk in _chunks(ids):
                query = sa.select(c.source, c.delivery_id).where(c.source == source, c.delivery_id.in_(chunk))
                found.update((r.source, r.delivery_id) for r in conn.execute(query))
        return found

    @staticmethod
    def _row(change: NewChange, now: datetime) -> dict[str, Any]:
        return {
            "source": change.source,
            "flow": change.flow,
            "record_key": change.record_key,
            "operation": change.operation,
            "payload": dict(change.fields),
            "delivery_id": change.delivery_id,
            "state": "pending",
            "attempts": 0,
            "available_at": now,
            "lease_owner": None,
            "leased_until": None,
            "created_at": now,
            "updated_at": now,
            "last_error": None,
            "meta": change.meta.to_dict() if change.meta is not None else None,
        }

    # -- claim ----------------------------------------------------------------------------------

    def claim(
        self, owner: str, limit: int = 200, *, flows: Collection[str] | None = None
    ) -> list[ClaimedChange]:
        """Lease up to ``limit`` records' work to ``owner``, oldest available first."""
        if limit <= 0 or (flows is not None and not flows):
            return []
        return self.store.run(lambda c: self._claim(c, owner, limit, flows))

    def _heads(
        self, conn: Connection, now: datetime, limit: int, flows: Collection[str] | None
    ) -> list[Row[Any]]:
        c = t_changes.c
        other = t_changes.alias("other")
        o = other.c
        blocked = (
            sa.exists()
            .where(
                o.flow == c.flow,
                o.record_key == c.record_key,
                o.id != c.id,
                o.state.in_(UNFINISHED),
                sa.or_(o.id < c.id, sa.and_(o.state == "leased", o.available_at > now)),
            )
            .correlate(t_changes)
        )
        heads: list[Any] = []
        # One query per state, so that each walks the (state, available_at, id) index in order.
        for state in ("pending", "leased"):
            query = (
                sa.select(c.id, c.flow, c.record_key, c.available_at)
                .where(c.state == state, c.available_at <= now, ~blocked)
                .order_by(c.available_at, c.id)
                .limit(limit)
            )
            if flows is not None:
                query = query.where(c.flow.in_(sorted(flows)))
            if self._locking:
                query = query.with_for_update(skip_locked=True)
            heads.extend(conn.execute(query).all())
        heads.sort(key=lambda r: (r.available_at, r.id))
        return heads[:limit]

    def _claim(
        self, conn: Connection, owner: str, limit: int, flows: Collection[str] | None
    ) -> list[ClaimedChange]:
        now = self.clock()
        until = now + timedelta(seconds=self.lease_seconds)
        heads = self._heads(conn, now, limit, flows)
        if not heads:
            return []
        c = t_changes.c
        members: dict[tuple[str, str], list[Row[Any]]] = {(h.flow, h.record_key): [] for h in heads}
        head_ids = {(h.flow, h.record_key): h.id for h in heads}
        stopped: set[tuple[str, str]] = set()
        by_flow: dict[str, list[str]] = {}
        for flow, record_key in members:
            by_flow.setdefault(flow, []).append(record_key)
        batches = [(flow, chunk) for flow, record_keys in by_flow.items() for chunk in _chunks(record_keys)]
        for flow, chunk in batches:
            query = (
                sa.select(c.id, c.source, c.flow, c.record_key, c.operation, c.payload, c.state)
                .add_columns(c.available_at, c.leased_until, c.attempts, c.created_at, c.meta)
                .where(c.flow == flow, c.record_key.in_(chunk), c.state.in_(UNFINISHED))
                .order_by(c.id)
            )
            if self._locking:
                query = query.with_for_update()
            for row in conn.execute(query):
                key = (row.flow, row.record_key)
                if key in stopped or row.id < head_ids[key]:
                    continue
                live_elsewhere = row.id != head_ids[key] and row.state == "leased" and row.available_at > now
                if live_elsewhere or len(members[key]) >= self.max_fold:
                    stopped.add(key)  # fold nothing past a gap: order must hold
                    continue
                if members[key] and (row.meta or members[key][0].meta):
                    stopped.add(key)  # an event is applied on its own
                    continue
                members[key].append(row)
        claimed: list[ClaimedChange] = []
        ids: list[int] = []
        for head in heads:
            rows = members[(head.flow, head.record_key)]
            if not rows or rows[0].id != head.id:
                continue  # the head changed under us (finished meanwhile); leave the record
            operation, fields = fold((r.operation, r.payload) for r in rows)
            change_ids = tuple(r.id for r in rows)
            ids.extend(change_ids)
            claimed.append(
                ClaimedChange(
                    change_ids=change_ids,
                    source=rows[0].source,
                    flow=head.flow,
                    record_key=head.record_key,
                    operation=operation,
                    fields=fields,
                    attempts=rows[0].attempts,
                    created_at=rows[0].created_at,
                    lease_owner=owner,
                    meta=EventMeta.from_dict(rows[0].meta) if len(rows) == 1 else None,
                    parts=tuple((r.operation, r.payload, r.created_at) for r in rows)
                    if len(rows) > 1
                    else (),
                    # a leased row's lease ran out; a pending one keeps its lease's end when it
                    # was given back after its write was sent (see :meth:`release`)
                    reclaimed=any(r.leased_until is not None for r in rows),
                )
            )
        values = {
            "state": "leased",
            "lease_owner": owner,
            "leased_until": until,
            "available_at": until,
            "updated_at": now,
        }
        for chunk in _chunks(ids):
            conn.execute(sa.update(t_changes).where(c.id.in_(chunk)).values(**values))
        return claimed

    # -- outcomes -------------------------------------------------------------------------------

    def _fenced_update(
        self, conn: Connection, claimed: Sequence[ClaimedChange], values: dict[str, Any]
    ) -> int:
        c = t_changes.c
        changed = 0
        for owner in {cc.lease_owner for cc in claimed}:
            ids = [i for cc in claimed if cc.lease_owner == owner for i in cc.change_ids]
            for chunk in _chunks(ids):
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
            result = conn.execute(
                sa.insert(t_dead).values(
                    change_ids=list(claimed.change_ids),
                    source=claimed.source,
                    flow=claimed.flow,
                    record_key=claimed.record_key,
                    operation=claimed.operation,
                    payload=dict(claimed.fields),
                    error=error.to_dict(),
                    attempts=claimed.attempts + 1,
                    created_at=now,
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

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
                for chunk in _chunks(ids):
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
            dead = conn.execute(
                sa.select(sa.func.count())
                .select_from(t_dead)
                .where(t_dead.c.discarded_at.is_(None), t_dead.c.replay_requested_at.is_(None))
            ).scalar_one()
        age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else None
        return QueueStats(counts["pending"], counts["leased"], int(dead), retrying, age)

    def purge_done(self, older_than: timedelta) -> int:
        """Delete done changes last touched more than ``older_than`` ago; returns how many."""
        cutoff = self.clock() - older_than
        c = t_changes.c

        def work(conn: Connection) -> int:
            return conn.execute(sa.delete(t_changes).where(c.state == "done", c.updated_at < cutoff)).rowcount

        return self.store.run(work)

    # -- dead letters ---------------------------------------------------------------------------

    def dead_letters(
        self, *, flow: str | None = None, limit: int = 100, include_discarded: bool = False
    ) -> list[DeadLetter]:
        """Newest first."""
        d = t_dead.c
        query = sa.select(t_dead).order_by(d.id.desc()).limit(limit)
        if flow is not None:
            query = query.where(d.flow == flow)
        if not include_discarded:
            query = query.where(d.discarded_at.is_(None))
        with self.store.read() as conn:
            return [_dead_letter(r) for r in conn.execute(query)]

    def dead_letter(self, id: int) -> DeadLetter | None:
        with self.store.read() as conn:
            row = conn.execute(sa.select(t_dead).where(t_dead.c.id == id)).first()
        return _dead_letter(row) if row is not None else None

    def replay(self, ids: Sequence[int]) -> int:
        """Enqueue the net change of each open dead letter again (new change rows, same fields, and
        the event's metadata when the letter holds one event) and mark the letters replayed.
        Letters already replayed or discarded are left alone. Returns how many were replayed."""
        if not ids:
            return 0
        now = self.clock()
        d = t_dead.c

        def work(conn: Connection) -> int:
            query = (
                sa.select(t_dead)
                .where(d.id.in_(list(ids)), d.replay_requested_at.is_(None), d.discarded_at.is_(None))
                .order_by(d.id)
            )
            if self._locking:
                query = query.with_for_update()
            letters = [_dead_letter(r) for r in conn.execute(query)]
            if not letters:
                return 0
            metas = self._event_metas(conn, [x.change_ids[0] for x in letters if len(x.change_ids) == 1])
            new = [
                NewChange(
                    x.source,
                    x.flow,
                    x.record_key,
                    x.operation,
                    x.fields,
                    meta=metas.get(x.change_ids[0]) if len(x.change_ids) == 1 else None,
                )
                for x in letters
            ]
            conn.execute(sa.insert(t_changes), [self._row(n, now) for n in new])
            conn.execute(
                sa.update(t_dead).where(d.id.in_([x.id for x in letters])).values(replay_requested_at=now)
            )
            return len(letters)

        return self.store.run(work)

    @staticmethod
    def _event_metas(conn: Connection, change_ids: Sequence[int]) -> dict[int, EventMeta]:
        """The event metadata of these changes (an event is never folded, so a dead letter of one
        event holds one change id); changes purged since are absent."""
        found: dict[int, EventMeta] = {}
        c = t_changes.c
        for chunk in _chunks(list(change_ids)):
            for row in conn.execute(sa.select(c.id, c.meta).where(c.id.in_(chunk), c.meta.is_not(None))):
                meta = EventMeta.from_dict(row.meta)
                if meta is not None:
                    found[row.id] = meta
        return found

    def discard(self, ids: Sequence[int], reason: str | None = None) -> int:
        """Mark dead letters discarded (kept for the record, hidden from the default listing),
        with why when given."""
        if not ids:
            return 0
        now = self.clock()
        d = t_dead.c

        def work(conn: Connection) -> int:
            stmt = sa.update(t_dead).where(d.id.in_(list(ids)), d.discarded_at.is_(None))
            return conn.execute(stmt.values(discarded_at=now, discard_reason=reason)).rowcount

        return self.store.run(work)


def _dead_letter(row: Row[Any]) -> DeadLetter:
    return DeadLetter(
        id=row.id,
        change_ids=tuple(row.change_ids),
        source=row.source,
        flow=row.flow,
        record_key=row.record_key,
        operation=row.operation,
        fields=row.payload,
        error=row.error,
        attempts=row.attempts,
        created_at=row.created_at,
        replay_requested_at=row.replay_requested_at,
        discarded_at=row.discarded_at,
        discard_reason=row.discard_reason,
    )
