"""The rate governor: Trello's request budgets, shared by every crmsync process through the store.

Trello allows 100 requests per 10 s per token, 300 per key (summed over its tokens) and 100 per
900 s per token on ``/1/members/*``; it answers 429 beyond, and locks a key that keeps hammering.
Whether its windows restart or slide is not documented, so the governor keeps a **sliding
window** — safe under both: a budget of ``limit`` requests is a ring of ``limit`` *slots*, each
stamped with the time it was last used. A request takes the oldest slot of each budget it counts
against, once that slot's stamp is at least ``window + margin`` seconds old; otherwise the caller
sleeps until it is. So no interval of ``window`` seconds ever holds more than ``limit`` requests,
and a busy run sends ``limit`` requests every ``window + margin`` seconds (97 % of the budget
with the default 0.3 s margin).

The rings live in the store's ``api_budget`` table, one row per slot::

    connection = "trello-token:<digest>"   the budget (a digest of key and token: every connection
                 "trello-key:<digest>"     and process using the same token shares it)
                 "trello-member:<digest>"
    window     = "slot 0042"
    used       = how many requests the slot carried (for the curious)
    updated_at = when the slot was last used

A slot is taken in one short transaction (``FOR UPDATE SKIP LOCKED`` where the database has it,
so concurrent takers pick different slots; SQLite's write transactions are serial). Without a
store (a connector used on its own) the rings are kept in memory.

The ``x-rate-limit-api-{token,key}-remaining`` headers of each reply are merged in
(:meth:`RateGovernor.observe`): when Trello counts more requests than the ring holds (another
program uses the same token or key), as many free slots are stamped "now". A 429 stamps every
slot of the refused budget (:meth:`RateGovernor.block`): nothing is sent before the next window.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from crmsync.connectors.base import ApiUsage
from crmsync.errors import BudgetExhausted
from crmsync.store import schema as t
from crmsync.store.db import Store

BudgetKind = Literal["token", "key", "member"]
#: the shortest sleep while another process holds the free slots (it releases them in milliseconds)
MIN_WAIT = 0.005
#: a generator of its own: the process's global one is left to the application (and its tests)
_JITTER = random.Random()
#: a slot that was never used
NEVER = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: a moment, or the clock to read it from at the moment a slot is taken
Now = float | Callable[[], float]


def _when(now: Now) -> float:
    return now() if callable(now) else now


@dataclass(frozen=True)
class Budget:
    """``limit`` requests per ``span`` seconds (window plus margin); ``name`` identifies it in the store."""

    name: str
    kind: BudgetKind
    limit: int
    span: float


def budget_name(kind: BudgetKind, *secrets: str) -> str:
    """A stable name for a budget that never shows the key or token (a digest of them)."""
    digest = hashlib.sha256("\0".join(secrets).encode()).hexdigest()[:24]
    return f"trello-{kind}:{digest}"


class SlotBook(Protocol):
    """Where the rings are kept (in memory, or shared in the store)."""

    def take(self, budgets: Sequence[Budget], now: Now) -> float:
        """Stamp one free slot of every budget with ``now`` (0.0), or none and return the wait. A
        clock is read once the slots are in hand (in the store: inside the transaction), so a take
        that waited for the store's lock is stamped when it took its slots, not when it asked:
        a stamp older than the request would free its slot too early."""
        ...

    def fill(self, budget: Budget, count: int, now: float) -> None:
        """Stamp up to ``count`` free slots with ``now`` (requests Trello counted but not we)."""
        ...

    def restamp(self, budget: Budget, taken: float, now: float) -> None:
        """The request whose slot was stamped ``taken`` was answered at ``now``: stamp it ``now``."""
        ...

    def block(self, budget: Budget, now: float) -> None:
        """Stamp every slot with ``now``: the budget is spent for a whole span."""
        ...

    def used(self, budget: Budget, now: float) -> int:
        """Slots used within the last span."""
        ...


class MemorySlots:
    """The rings of one process only."""

    def __init__(self) -> None:
        self._rings: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _ring(self, budget: Budget) -> list[float]:
        ring = self._rings.setdefault(budget.name, [])
        if len(ring) != budget.limit:
            ring[:] = (sorted(ring) + [0.0] * budget.limit)[: budget.limit]
        return ring

    def take(self, budgets: Sequence[Budget], now: Now) -> float:
        with self._lock:
            now = _when(now)
            wait = 0.0
            chosen: list[tuple[list[float], int]] = []
            for budget in budgets:
                ring = self._ring(budget)
                index = min(range(len(ring)), key=ring.__getitem__)
                wait = max(wait, ring[index] + budget.span - now)
                chosen.append((ring, index))
            if wait > 0:
                return wait
            for ring, index in chosen:
                ring[index] = now
            return 0.0

    def fill(self, budget: Budget, count: int, now: float) -> None:
        with self._lock:
            ring = self._ring(budget)
            free = [i for i, stamp in enumerate(ring) if stamp + budget.span <= now]
            for index in free[:count]:
                ring[index] = now

    def restamp(self, budget: Budget, taken: float, now: float) -> None:
        with self._lock:
            ring = self._ring(budget)
            if taken in ring and now > taken:
                ring[ring.index(taken)] = now

    def block(self, budget: Budget, now: float) -> None:
        with self._lock:
            ring = self._ring(budget)
            ring[:] = [max(stamp, now) for stamp in ring]

    def used(self, budget: Budget, now: float) -> int:
        with self._lock:
            return sum(1 for stamp in self._ring(budget) if stamp + budget.span > now)


def _at(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


class StoreSlots:
    """The rings in the store's ``api_budget`` table, shared by every process using the store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._ready: set[tuple[str, int]] = set()
        self._lock = threading.Lock()

    @staticmethod
    def _slot(index: int) -> str:
        return f"slot {index:04d}"

    def _ensure(self, budget: Budget) -> None:
        """Create the ring's rows (once per process); drop slots beyond a lowered limit."""
        with self._lock:
            if (budget.name, budget.limit) in self._ready:
                return
        c = t.api_budget.c

        def work(conn: sa.Connection) -> None:
            have = set(conn.execute(sa.select(c.window).where(c.connection == budget.name)).scalars())
            wanted = {self._slot(i) for i in range(budget.limit)}
            surplus = have - wanted
            if surplus:
                conn.execute(
                    sa.delete(t.api_budget).where(c.connection == budget.name, c.window.in_(surplus))
                )
            for window in sorted(wanted - have):
                try:
                    with conn.begin_nested():
                        conn.execute(
                            sa.insert(t.api_budget).values(
                                connection=budget.name,
                                window=window,
                                used=0,
                                limit_value=budget.limit,
                                updated_at=NEVER,
                            )
                        )
                except IntegrityError:
                    pass  # made meanwhile by another process

        self.store.run(work)
        with self._lock:
            self._ready.add((budget.name, budget.limit))

    def _free_slots(self, conn: sa.Connection, budget: Budget, now: float, count: int) -> list[str]:
        c = t.api_budget.c
        query = (
            sa.select(c.window)
            .where(c.connection == budget.name, c.updated_at <= _at(now - budget.span))
            .order_by(c.updated_at)
            .limit(count)
        )
        if self.store.dialect != "sqlite":
            query = query.with_for_update(skip_locked=True)
        return list(conn.execute(query).scalars())

    def _stamp(self, conn: sa.Connection, budget: Budget, windows: Sequence[str], now: float) -> None:
        c = t.api_budget.c
        conn.execute(
            sa.update(t.api_budget)
            .where(c.connection == budget.name, c.window.in_(list(windows)))
            .values(updated_at=_at(now), used=c.used + 1)
        )

    def take(self, budgets: Sequence[Budget], now: Now) -> float:
        for budget in budgets:
            self._ensure(budget)
        c = t.api_budget.c
        clock = now

        def work(conn: sa.Connection) -> float:
            now = _when(clock)  # read inside the transaction: the time the slot is taken
            wait = 0.0
            chosen: list[tuple[Budget, list[str]]] = []
            for budget in budgets:
                free = self._free_slots(conn, budget, now, 1)
                if free:
                    chosen.append((budget, free))
                    continue
                oldest = conn.execute(sa.select(sa.func.min(c.updated_at)).where(c.connection == budget.name))
                stamp = oldest.scalar()
                until = stamp.timestamp() + budget.span - now if stamp is not None else 0.0
                wait = max(wait, until, MIN_WAIT)  # the free ones may be held by another taker
            if wait > 0:
                return wait
            for budget, windows in chosen:
                self._stamp(conn, budget, windows, now)
            return 0.0

        return self.store.run(work)

    def fill(self, budget: Budget, count: int, now: float) -> None:
        self._ensure(budget)

        def work(conn: sa.Connection) -> None:
            free = self._free_slots(conn, budget, now, count)
            if free:
                self._stamp(conn, budget, free, now)

        self.store.run(work)

    def restamp(self, budget: Budget, taken: float, now: float) -> None:
        c = t.api_budget.c
        if now <= taken:
            return
        self.store.run(
            lambda conn: conn.execute(
                sa.update(t.api_budget)
                .where(c.connection == budget.name, c.updated_at == _at(taken))
                .values(updated_at=_at(now))
            )
        )

    def block(self, budget: Budget, now: float) -> None:
        self._ensure(budget)
        c = t.api_budget.c
        self.store.run(
            lambda conn: conn.execute(
                sa.update(t.api_budget)
                .where(c.connection == budget.name, c.updated_at < _at(now))
                .values(updated_at=_at(now))
            )
        )

    def used(self, budget: Budget, now: float) -> int:
        c = t.api_budget.c
        with self.store.read() as conn:
            query = sa.select(sa.func.count()).where(
                c.connection == budget.name, c.updated_at > _at(now - budget.span)
            )
            return int(conn.execute(query).scalar() or 0)


class RateGovernor:
    """Takes a slot of each budget before every request; sleeps while a budget is spent."""

    def __init__(
        self,
        budgets: Mapping[BudgetKind, Budget],
        book: SlotBook | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        max_wait: float = 15 * 60.0,
        jitter: float = 0.25,
        slack: float | None = None,
    ) -> None:
        self.budgets = dict(budgets)
        self.book: SlotBook = book if book is not None else MemorySlots()
        self.clock = clock
        self.sleep = sleep
        self.max_wait = max_wait
        self.jitter = jitter
        self.slack = slack
        self._stats = threading.Lock()
        self.waited = 0.0  # seconds slept for the budget, for metrics and tests
        self.blocked = 0  # 429s answered

    def kinds_for(self, path: str) -> list[BudgetKind]:
        """The budgets a request to ``path`` (under ``/1``) counts against."""
        kinds: list[BudgetKind] = ["token", "key"]
        if path.lstrip("/").startswith(("members/", "member/")) or path.strip("/") in ("members", "member"):
            kinds.append("member")
        return kinds

    def acquire(self, path: str) -> float:
        """Take a slot of every budget ``path`` counts against, sleeping until each has one; the
        time the slots were stamped with (for :meth:`answered`)."""
        wanted = [self.budgets[k] for k in self.kinds_for(path) if k in self.budgets]
        started = self.clock()
        read: list[float] = []

        def clock() -> float:
            read.append(self.clock())
            return read[-1]

        while (wait := self.book.take(wanted, clock)) > 0:
            if self.clock() + wait - started > self.max_wait:
                raise BudgetExhausted(
                    f"the Trello request budget stays spent for more than {self.max_wait:.0f} s",
                    retry_after=wait,
                )
            self.sleep(wait)
            with self._stats:
                self.waited += wait
        return read[-1] if read else started

    def answered(self, path: str, taken: float) -> None:
        """The request to ``path`` whose slots were stamped ``taken`` has its answer (or failed).
        Trello counted it at some moment up to now: when that is more than ``slack`` (the margin)
        after ``taken`` — the request waited to go out, or took long — its slots are stamped now, so
        they do not free before Trello's own window lets the request go."""
        if self.slack is None:
            return
        now = self.clock()
        if now - taken <= self.slack:
            return
        for kind in self.kinds_for(path):
            budget = self.budgets.get(kind)
            if budget is not None:
                self.book.restamp(budget, taken, now)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Merge Trello's own count (``x-rate-limit-api-*-remaining``) into the rings."""
        now = self.clock()
        kinds: tuple[BudgetKind, ...] = ("token", "key")
        for kind in kinds:
            budget = self.budgets.get(kind)
            remaining = _int(headers.get(f"x-rate-limit-api-{kind}-remaining"))
            top = _int(headers.get(f"x-rate-limit-api-{kind}-max"))
            if budget is None or remaining is None:
                continue
            counted = min(top or budget.limit, budget.limit) - remaining
            if counted <= 0:
                continue
            foreign = counted - self.book.used(budget, now)
            if foreign > 0:
                self.book.fill(budget, foreign, now)

    def block(self, kinds: Sequence[BudgetKind]) -> float:
        """Trello answered 429 for ``kinds``: nothing goes out before their next window.

        Returns the wait (a span, plus jitter so that processes do not return all at once)."""
        now = self.clock() + _JITTER.uniform(0, self.jitter)  # jitter, not a secret
        span = 0.0
        for kind in kinds:
            budget = self.budgets.get(kind)
            if budget is not None:
                self.book.block(budget, now)
                span = max(span, budget.span)
        with self._stats:
            self.blocked += 1
        return span

    def usage(self) -> ApiUsage:
        """Requests of the token's budget in the last window, and its limit."""
        budget = self.budgets["token"]
        return ApiUsage(used=self.book.used(budget, self.clock()), limit=budget.limit)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None
