"""Shared API budgets: limits that every crmsync process counts together, through the store.

Two primitives, each kept in a *book*: :class:`StoreBudgets` (shared by every process using the
store) or :class:`MemoryBudgets` (one process only: a connector used on its own).

**A rolling window** (:class:`Window`): at most ``limit`` units (API calls) in any ``seconds``
seconds. The window is cut into ``buckets`` buckets of ``seconds / buckets`` seconds; a unit
counts in the bucket of the moment it was taken, and a bucket counts as long as any part of it
lies inside the last ``seconds`` — a little longer than the unit itself does, so the limit is
never passed in any interval of ``seconds``, and a busy run uses ``buckets / (buckets + 1)`` of it
(99 % with the default 96 buckets of a day). :meth:`BudgetBook.take` takes units or answers how
long until they fit. :meth:`BudgetBook.report` merges a count the vendor reports (units taken by
others too, e.g. other programs using the same account): for ``report_seconds`` the window holds
at least that count plus the units taken since, and a newer report replaces it — so the count
follows the vendor's own window down as well as up, and a full report is tried again (one call)
once it is ``report_seconds`` old.

In the store's ``api_budget`` table, a window named ``name`` (the ``connection`` column: the
crmsync connection it belongs to) and ``label`` is one row shown to people, and a ring of
``buckets + 1`` rows::

    (name, label)             used = units in the window at the last change, limit_value = limit,
                              updated_at = when it changed (what ``crmsync status`` and the
                              dashboard show)
    (name, "label #007")      used = units taken in the bucket, updated_at = the bucket's start
    (name, "label #vendor")   used = the vendor's last count plus the units taken since,
                              updated_at = when it was reported

A take locks the shown row (``FOR UPDATE``; SQLite's write transactions are serial), so takers of
one window queue for a few milliseconds and the count is exact across processes.

**A semaphore of leased slots** (:class:`Slots`): at most ``limit`` holders at once — for requests
in flight. A slot is a lease of the store's ``leases`` table named ``name#NN`` (``name`` starts
with the connection) that runs out after ``ttl`` seconds: a process that is killed while it holds
slots gives them back by itself. Its owner starts with the process's ``host:pid``, so ``crmsync
status`` lists the slots with what each process holds.

People see both through their shown rows, read by :mod:`crmsync.store.budget_view`.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError

from crmsync.store import schema as t
from crmsync.store.db import Store, upsert, upsert_many

T = TypeVar("T")
#: a generator of its own: the process's global one is left to the application (and its tests)
_SHUFFLE = random.Random()

#: connections the budgets keep open on PostgreSQL, and tries of a transaction that met a deadlock
#: or a broken connection
POOL_SIZE = 2
ATTEMPTS = 5

#: a day, the default window
DAY = 86_400.0
#: buckets of a window by default (a day: 15 minutes each)
BUCKETS = 96
#: the ``api_budget.window`` of a semaphore's shown row ends with this; its use is counted live
IN_FLIGHT = "in flight"
#: separates a window's label from its bucket number, and a semaphore's name from its slot number
BUCKET_MARK = " #"
SLOT_MARK = "#"


@dataclass(frozen=True)
class Window:
    """At most ``limit`` units in any ``seconds`` seconds, counted in ``buckets`` buckets."""

    name: str
    label: str
    limit: int
    seconds: float = DAY
    buckets: int = BUCKETS
    #: how long a count the vendor reported (:meth:`BudgetBook.report`) holds without a newer one
    report_seconds: float = 900.0

    def __post_init__(self) -> None:
        if self.seconds <= 0 or self.buckets < 1 or self.limit < 0:
            raise ValueError("a window needs positive seconds and buckets, and a limit of at least 0")

    @property
    def bucket_seconds(self) -> float:
        return self.seconds / self.buckets

    def bucket(self, now: float) -> tuple[str, float]:
        """The row and the start of the bucket ``now`` falls in."""
        number = math.floor(now / self.bucket_seconds)
        return f"{self.label}{BUCKET_MARK}{number % (self.buckets + 1):03d}", number * self.bucket_seconds

    def counts(self, start: float, now: float) -> bool:
        """Whether the bucket starting at ``start`` lies partly inside the last ``seconds``."""
        return start + self.bucket_seconds > now - self.seconds


@dataclass(frozen=True)
class Taken:
    """What a take did: ``granted``; ``used`` units in the window after it; else the ``wait``
    (seconds) until the units asked for fit."""

    granted: bool
    used: int
    wait: float = 0.0
    #: the vendor's reported count plus the units taken since, while the report holds
    reported: int | None = None
    #: the slot taken with the units (``take(..., slots=)``), None when all were held
    slot: str | None = None


#: a vendor's report: (when, its count plus the units taken since)
Report = tuple[float, int]


def assess(
    window: Window, buckets: Iterable[tuple[float, int]], report: Report | None, count: int, now: float
) -> Taken:
    """Whether ``count`` more units fit both the buckets and the vendor's report (while it holds)."""
    own = wait_for(window, buckets, count, now)
    level = report[1] if report is not None and report[0] + window.report_seconds > now else None
    if level is None or level + count <= window.limit:
        return Taken(
            own.granted, max(own.used, (level or 0) + (count if own.granted else 0)), own.wait, level
        )
    assert report is not None
    wait = max(own.wait, report[0] + window.report_seconds - now, 0.001)
    return Taken(False, max(own.used, level), wait, level)


def wait_for(window: Window, buckets: Iterable[tuple[float, int]], count: int, now: float) -> Taken:
    """Whether ``count`` more units fit the window holding ``buckets`` ((start, used) pairs)."""
    live = sorted((start, used) for start, used in buckets if window.counts(start, now) and used > 0)
    total = sum(used for _, used in live)
    if total + count <= window.limit:
        return Taken(True, total + count)
    left = total
    for start, used in live:
        left -= used
        if left + count <= window.limit:
            return Taken(False, total, max(0.001, start + window.bucket_seconds + window.seconds - now))
    # more than the whole limit: never; say so with a whole window's wait
    return Taken(False, total, window.seconds + window.bucket_seconds)


def combine(each: Sequence[Taken]) -> Taken:
    """One take of several windows: granted when every one is; the longest wait; the fullest use."""
    reported = next((one.reported for one in each if one.reported is not None), None)
    if all(one.granted for one in each):
        return Taken(True, max((one.used for one in each), default=0), reported=reported)
    waits = [one.wait for one in each if not one.granted]
    return Taken(False, max(one.used for one in each), max(waits), reported)


@dataclass(frozen=True)
class Slots:
    """At most ``limit`` holders at once of ``label`` on ``connection``; a slot is held at most
    ``ttl`` seconds. Its leases are named ``label:connection#NN``."""

    connection: str
    label: str
    limit: int
    ttl: float

    @property
    def name(self) -> str:
        return f"{self.label}:{self.connection}"

    @property
    def shown_as(self) -> str:
        """The ``api_budget.window`` of its shown row."""
        return f"{self.label} {IN_FLIGHT}"

    def slot(self, index: int) -> str:
        return f"{self.name}{SLOT_MARK}{index:02d}"

    @property
    def all(self) -> list[str]:
        return [self.slot(i) for i in range(self.limit)]


class BudgetBook(Protocol):
    """Where windows and slots are kept (one process's memory, or the store)."""

    def take(
        self, windows: Sequence[Window], count: int, now: float, slots: Slots | None = None, owner: str = ""
    ) -> Taken:
        """Take ``count`` units of every window if they fit all of them now; else take nothing and
        say how long to wait. With ``slots``, a slot is taken for ``owner`` too when the units
        are (in the same transaction; ``Taken.slot`` is None when every slot is held)."""
        ...

    def report(self, window: Window, used: int, now: float) -> None:
        """The vendor counts ``used`` units in its own window now (other programs' too): for
        ``window.report_seconds`` the window holds at least that many plus the units taken since,
        unless a newer report comes. A report can lower the count (the vendor's window rolled)."""
        ...

    def used(self, window: Window, now: float) -> int:
        """Units in the window now."""
        ...

    def acquire(self, slots: Slots, owner: str, now: float) -> str | None:
        """Take a free slot for ``owner`` until ``now + ttl``; None when all are held."""
        ...

    def release(self, slots: Slots, slot: str, owner: str) -> None:
        """Give ``slot`` back (only while ``owner`` still holds it)."""
        ...

    def holding(self, slots: Slots, now: float) -> int:
        """Slots held now."""
        ...

    def close(self) -> None:
        """Let go of what the book holds open (connections)."""
        ...


class MemoryBudgets:
    """Windows and slots of one process only."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], dict[str, tuple[float, int]]] = {}
        self._reports: dict[tuple[str, str], Report] = {}
        self._slots: dict[str, tuple[str, float]] = {}

    def _ring(self, window: Window) -> dict[str, tuple[float, int]]:
        return self._buckets.setdefault((window.name, window.label), {})

    def _add(self, window: Window, count: int, now: float) -> None:
        ring = self._ring(window)
        row, start = window.bucket(now)
        held = ring.get(row)
        before = held[1] if held is not None and abs(held[0] - start) < 1e-6 else 0
        ring[row] = (start, before + count)

    def _assess(self, window: Window, count: int, now: float) -> Taken:
        key = (window.name, window.label)
        return assess(window, self._ring(window).values(), self._reports.get(key), count, now)

    def take(
        self, windows: Sequence[Window], count: int, now: float, slots: Slots | None = None, owner: str = ""
    ) -> Taken:
        with self._lock:
            taken = combine([self._assess(w, count, now) for w in windows])
            if taken.granted:
                for window in windows:
                    self._add(window, count, now)
                    key = (window.name, window.label)
                    if (report := self._reports.get(key)) is not None:
                        self._reports[key] = (report[0], report[1] + count)
                if slots is not None:
                    taken = replace(taken, slot=self._acquire(slots, owner, now))
            return taken

    def report(self, window: Window, used: int, now: float) -> None:
        with self._lock:
            self._reports[(window.name, window.label)] = (now, used)

    def used(self, window: Window, now: float) -> int:
        with self._lock:
            return self._assess(window, 0, now).used

    def _acquire(self, slots: Slots, owner: str, now: float) -> str | None:
        for slot in slots.all:
            held = self._slots.get(slot)
            if held is None or held[1] <= now:
                self._slots[slot] = (owner, now + slots.ttl)
                return slot
        return None

    def acquire(self, slots: Slots, owner: str, now: float) -> str | None:
        with self._lock:
            return self._acquire(slots, owner, now)

    def release(self, slots: Slots, slot: str, owner: str) -> None:
        with self._lock:
            held = self._slots.get(slot)
            if held is not None and held[0] == owner:
                del self._slots[slot]

    def close(self) -> None:
        pass

    def holding(self, slots: Slots, now: float) -> int:
        with self._lock:
            return sum(1 for s in slots.all if (held := self._slots.get(s)) is not None and held[1] > now)


def _at(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


#: a free slot's lease ends here
NEVER = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class StoreBudgets:
    """Windows and slots in the store, shared by every process using it.

    A take is one transaction of three statements whatever the number of windows (lock their
    shown rows, read their buckets, write the changed rows at once); on PostgreSQL a slot is taken
    with one statement (``FOR UPDATE SKIP LOCKED``) in the same transaction, and given back with
    another, on its own.

    On PostgreSQL the budgets keep a small pool of connections of their own (:data:`POOL_SIZE`,
    more while many threads call at once) whose commits do not wait for the disk: a count lost in
    a crash of the database is a handful of calls, while waiting for every commit to be flushed
    (and checking each connection before use) would add milliseconds to every API call. A
    connection found broken is replaced and the work done again.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._slot_rows: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self._engine: sa.Engine | None = None
        if store.dialect == "postgresql":
            self._engine = sa.create_engine(
                store.engine.url,
                pool_size=POOL_SIZE,
                max_overflow=4 * POOL_SIZE,
                isolation_level="READ COMMITTED",
                connect_args={"connect_timeout": 10, "options": "-c synchronous_commit=off"},
            )

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    def _run(self, work: Callable[[Connection], T], *, autocommit: bool = False) -> T:
        """``work`` in a write transaction (``autocommit``: one statement on its own)."""
        if self._engine is None:
            return self.store.run(work)
        for attempt in range(1, ATTEMPTS + 1):
            try:
                if autocommit:
                    with self._engine.connect() as conn:
                        return work(conn.execution_options(isolation_level="AUTOCOMMIT"))
                with self._engine.begin() as conn:
                    return work(conn)
            except DBAPIError as exc:
                broken = exc.connection_invalidated
                if attempt == ATTEMPTS or not (broken or self.store.is_retryable(exc)):
                    raise
                time.sleep(0.01 * attempt)
        raise AssertionError("unreachable")

    # -- windows -----------------------------------------------------------------------------
    def _lock_heads(self, conn: Connection, windows: Sequence[Window], now: float) -> None:
        c = t.api_budget.c
        keys = [(w.name, w.label) for w in windows]
        query = sa.select(c.connection, c.window).where(sa.tuple_(c.connection, c.window).in_(keys))
        if self.store.dialect != "sqlite":
            query = query.with_for_update()
        found = {(r.connection, r.window) for r in conn.execute(query)}
        missing = [w for w in windows if (w.name, w.label) not in found]
        if not missing:
            return
        for window in missing:
            try:
                with conn.begin_nested():
                    conn.execute(
                        sa.insert(t.api_budget).values(
                            connection=window.name,
                            window=window.label,
                            used=0,
                            limit_value=window.limit,
                            updated_at=_at(now),
                        )
                    )
            except IntegrityError:
                pass  # made meanwhile by another process
        conn.execute(query)  # locked now (they exist)

    def _states(
        self, conn: Connection, windows: Sequence[Window], now: float
    ) -> list[tuple[dict[str, tuple[float, int]], Report | None]]:
        """Each window's live buckets by row, and the vendor's report (if any)."""
        c = t.api_budget.c
        rows = conn.execute(
            sa.select(c.connection, c.window, c.used, c.updated_at).where(
                sa.or_(
                    *(
                        sa.and_(
                            c.connection == w.name,
                            c.window.startswith(w.label + BUCKET_MARK, autoescape=True),
                            sa.or_(
                                c.updated_at > _at(now - w.seconds - w.bucket_seconds),
                                c.window == _reported(w),
                            ),
                        )
                        for w in windows
                    )
                )
            )
        ).all()
        out: list[tuple[dict[str, tuple[float, int]], Report | None]] = []
        for w in windows:
            ring: dict[str, tuple[float, int]] = {}
            report: Report | None = None
            for r in rows:
                if r.connection != w.name or not r.window.startswith(w.label + BUCKET_MARK):
                    continue
                if r.window == _reported(w):
                    report = (r.updated_at.timestamp(), int(r.used))
                elif is_bucket(r.window) and r.window.rpartition(BUCKET_MARK)[0] == w.label:
                    ring[r.window] = (r.updated_at.timestamp(), int(r.used))
            out.append((ring, report))
        return out

    @staticmethod
    def _row(window: Window, name: str, used: int, limit: int | None, at: float) -> dict[str, object]:
        return {
            "connection": window.name,
            "window": name,
            "used": used,
            "limit_value": limit,
            "updated_at": _at(at),
        }

    def take(
        self, windows: Sequence[Window], count: int, now: float, slots: Slots | None = None, owner: str = ""
    ) -> Taken:
        ordered = sorted(windows, key=lambda w: (w.name, w.label))  # one lock order: no deadlock
        if slots is not None and self.store.dialect == "postgresql":
            self._ensure_slots(slots)

        def work(conn: Connection) -> Taken:
            self._lock_heads(conn, ordered, now)
            states = self._states(conn, ordered, now)
            each = [
                assess(w, ring.values(), report, count, now)
                for w, (ring, report) in zip(ordered, states, strict=True)
            ]
            taken = combine(each)
            rows = []
            for window, (ring, report), one in zip(ordered, states, each, strict=True):
                if taken.granted:
                    row, start = window.bucket(now)
                    held = ring.get(row)
                    before = held[1] if held is not None and abs(held[0] - start) < 1e-3 else 0
                    rows.append(self._row(window, row, before + count, None, start))
                    if report is not None:
                        rows.append(self._row(window, _reported(window), report[1] + count, None, report[0]))
                rows.append(self._row(window, window.label, one.used, window.limit, now))
            upsert_many(conn, t.api_budget, rows, ("connection", "window"))
            if taken.granted and slots is not None:
                taken = replace(taken, slot=self._acquire_in(conn, slots, owner, now))
            return taken

        return self._run(work)

    def report(self, window: Window, used: int, now: float) -> None:
        def work(conn: Connection) -> None:
            self._lock_heads(conn, [window], now)
            ((ring, _),) = self._states(conn, [window], now)
            shown = assess(window, ring.values(), (now, used), 0, now).used
            upsert_many(
                conn,
                t.api_budget,
                [
                    self._row(window, _reported(window), used, None, now),
                    self._row(window, window.label, shown, window.limit, now),
                ],
                ("connection", "window"),
            )

        self._run(work)

    def used(self, window: Window, now: float) -> int:
        with self.store.read() as conn:
            ((ring, report),) = self._states(conn, [window], now)
            return assess(window, ring.values(), report, 0, now).used

    # -- slots -------------------------------------------------------------------------------
    def _ensure_slots(self, slots: Slots) -> None:
        """Make the slots' lease rows (free) once per process, so that taking one is one statement."""
        key = (slots.name, slots.limit)
        with self._lock:
            if key in self._slot_rows:
                return
        c = t.leases.c

        def work(conn: Connection) -> None:
            have = set(conn.execute(sa.select(c.name).where(c.name.in_(slots.all))).scalars())
            for slot in slots.all:
                if slot in have:
                    continue
                try:
                    with conn.begin_nested():
                        conn.execute(sa.insert(t.leases).values(name=slot, owner="", until=NEVER))
                except IntegrityError:
                    pass  # made meanwhile by another process

        self._run(work)
        with self._lock:
            self._slot_rows.add(key)

    def acquire(self, slots: Slots, owner: str, now: float) -> str | None:
        if self.store.dialect == "postgresql":
            self._ensure_slots(slots)
        return self._run(lambda conn: self._acquire_in(conn, slots, owner, now))

    def _acquire_in(self, conn: Connection, slots: Slots, owner: str, now: float) -> str | None:
        c = t.leases.c
        at, until = _at(now), _at(now + slots.ttl)
        if self.store.dialect == "postgresql":  # its rows exist (_ensure_slots): one statement
            free = (
                sa.select(c.name)
                .where(c.name.in_(slots.all), c.until <= at)
                .limit(1)
                .with_for_update(skip_locked=True)
                .scalar_subquery()
            )
            found = conn.execute(
                sa.update(t.leases).where(c.name == free).values(owner=owner, until=until).returning(c.name)
            ).scalar()
            return None if found is None else str(found)
        held = {r.name for r in conn.execute(sa.select(c.name).where(c.name.in_(slots.all), c.until > at))}
        candidates = [s for s in slots.all if s not in held]
        _SHUFFLE.shuffle(candidates)  # concurrent takers try different slots first (not a secret)
        for slot in candidates:
            taken = conn.execute(
                sa.update(t.leases).where(c.name == slot, c.until <= at).values(owner=owner, until=until)
            ).rowcount
            if taken:
                return slot
            try:
                with conn.begin_nested():
                    conn.execute(sa.insert(t.leases).values(name=slot, owner=owner, until=until))
            except IntegrityError:
                continue  # another taker was quicker
            return slot
        return None

    def release(self, slots: Slots, slot: str, owner: str) -> None:
        c = t.leases.c
        self._run(
            lambda conn: conn.execute(
                sa.update(t.leases).where(c.name == slot, c.owner == owner).values(until=NEVER)
            ),
            autocommit=True,
        )

    def holding(self, slots: Slots, now: float) -> int:
        c = t.leases.c
        with self.store.read() as conn:
            query = sa.select(sa.func.count()).where(c.name.in_(slots.all), c.until > _at(now))
            return int(conn.execute(query).scalar() or 0)

    def show_slots(self, slots: Slots, now: float) -> None:
        """Record the semaphore's limit in its shown row, for ``crmsync status`` and the dashboard."""
        self._run(
            lambda conn: upsert(
                conn,
                t.api_budget,
                {"connection": slots.connection, "window": slots.shown_as},
                {"used": 0, "limit_value": slots.limit, "updated_at": _at(now)},
            )
        )


def _reported(window: Window) -> str:
    """The row of the vendor's report (hidden like the buckets)."""
    return f"{window.label}{BUCKET_MARK}vendor"


def is_bucket(window: str) -> bool:
    """Whether ``window`` names a hidden row of a ring (a bucket, or the vendor's report)."""
    head, mark, _ = window.rpartition(BUCKET_MARK)
    return bool(head and mark)
