"""Complexity pacing: spend at most the per-minute budget, shared by every crmsync process.

monday counts complexity points per token in a 60 s window that opens with the first call after
the previous window closed (a "sliding window from the first call"), not per clock minute. Two
processes that each kept their own count could spend the budget twice, and clock-minute windows
could spend it twice inside one of monday's windows; so the count mirrors monday's own window and
lives in the store's ``api_budget`` table, one row per connection::

    (connection, "complexity")  used = points reserved in the window
                                limit_value = the budget
                                updated_at = when the window opened

Before a request, :meth:`ComplexityPacer.acquire` reserves its estimated cost in one transaction
(the row is locked with ``FOR UPDATE`` where the database has it; SQLite's write transactions
are serial). When the window cannot hold it, the caller sleeps until the window closes (plus
:data:`MARGIN` for the clocks and the network) and tries again — waiting rather than exceeding
the budget. After a reply, the estimate is corrected by what monday charged, and the vendor's own
``complexity { after reset_in_x_seconds }`` (which counts every user of the token) is merged in:
the window never ends before monday's does and never holds more than monday says is left.

Without a store (a connector used on its own), the same book is kept in memory.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from crmsync.connectors.base import ApiUsage
from crmsync.connectors.capabilities import countdown
from crmsync.errors import BudgetExhausted
from crmsync.store import schema as t
from crmsync.store.db import Store, upsert

#: monday's window, seconds
WINDOW = 60.0
#: extra seconds before a window is taken as closed (clock skew, request latency, whole-second resets)
MARGIN = 1.0
#: the ``api_budget.window`` of the complexity row
WINDOW_NAME = "complexity"


@dataclass(frozen=True)
class Window:
    """A budget window: opened at ``opened`` (epoch seconds), ``used`` points reserved in it."""

    opened: float
    used: int


class BudgetBook(Protocol):
    """Where the window of one connection is kept (in memory, or shared in the store)."""

    def update(self, change: Callable[[Window | None], tuple[Window, float]]) -> float:
        """Apply ``change`` to the current window atomically; return its second result."""
        ...

    def current(self) -> Window | None: ...


class MemoryBook:
    """The window of one process only."""

    def __init__(self) -> None:
        self._window: Window | None = None
        self._lock = threading.Lock()

    def update(self, change: Callable[[Window | None], tuple[Window, float]]) -> float:
        with self._lock:
            self._window, result = change(self._window)
            return result

    def current(self) -> Window | None:
        with self._lock:
            return self._window


class StoreBook:
    """The window of one connection in the store's ``api_budget`` table, shared by all processes."""

    def __init__(self, store: Store, connection: str, limit: int) -> None:
        self.store = store
        self.connection = connection
        self.limit = limit

    def _where(self) -> list[sa.ColumnElement[bool]]:
        return [t.api_budget.c.connection == self.connection, t.api_budget.c.window == WINDOW_NAME]

    def _read(self, conn: Connection, *, lock: bool) -> Window | None:
        query = sa.select(t.api_budget.c.used, t.api_budget.c.updated_at).where(*self._where())
        if lock and self.store.dialect != "sqlite":
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            return None
        return Window(opened=row.updated_at.timestamp(), used=int(row.used))

    def update(self, change: Callable[[Window | None], tuple[Window, float]]) -> float:
        def work(conn: Connection) -> float:
            window, result = change(self._read(conn, lock=True))
            upsert(
                conn,
                t.api_budget,
                {"connection": self.connection, "window": WINDOW_NAME},
                {
                    "used": window.used,
                    "limit_value": self.limit,
                    "updated_at": dt.datetime.fromtimestamp(window.opened, dt.UTC),
                },
            )
            return result

        return self.store.run(work)

    def current(self) -> Window | None:
        with self.store.read() as conn:
            return self._read(conn, lock=False)


class ComplexityPacer:
    """Reserves complexity points before each request; sleeps while the window is full."""

    def __init__(
        self,
        per_minute: int,
        book: BudgetBook | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        max_wait: float = 15 * 60.0,
    ) -> None:
        self.per_minute = per_minute
        self.book: BudgetBook = book if book is not None else MemoryBook()
        self.clock = clock
        self.sleep = sleep
        self.max_wait = max_wait
        self.waited = 0.0  # seconds slept for the budget, for metrics and tests
        #: told the seconds left while a wait lasts, then None (``MondayConnector.on_wait``)
        self.report: Callable[[float | None], None] | None = None

    def _open(self, window: Window | None, now: float) -> Window:
        if window is None or now >= window.opened + WINDOW + MARGIN:
            return Window(opened=now, used=0)
        return window

    def try_reserve(self, cost: int) -> float:
        """Reserve ``cost`` points now: 0.0 when reserved, else the seconds until the window closes."""
        now = self.clock()

        def change(window: Window | None) -> tuple[Window, float]:
            current = self._open(window, now)
            # a request dearer than the whole budget can only go alone, in a fresh window
            if current.used + cost <= self.per_minute or current.used == 0:
                return Window(current.opened, current.used + cost), 0.0
            return current, max(0.001, current.opened + WINDOW + MARGIN - now)

        return self.book.update(change)

    def acquire(self, cost: int) -> None:
        """Reserve ``cost`` points, sleeping until a window can hold them."""
        started = self.clock()
        while (wait := self.try_reserve(cost)) > 0:
            if self.clock() + wait - started > self.max_wait:
                raise BudgetExhausted(
                    f"the complexity budget of {self.per_minute}/min stays spent", retry_after=wait
                )
            if self.report is None:
                self.sleep(wait)
            else:
                countdown(wait, self.sleep, self.report)
            self.waited += wait

    def settle(self, estimated: int, actual: int) -> None:
        """Correct a reservation by what monday actually charged."""
        if actual == estimated:
            return
        now = self.clock()

        def change(window: Window | None) -> tuple[Window, float]:
            current = self._open(window, now)
            return Window(current.opened, max(0, current.used + actual - estimated)), 0.0

        self.book.update(change)

    def observe(self, left: int, reset_in: float | None) -> None:
        """Merge monday's view (``after`` points left, window closing in ``reset_in`` seconds)."""
        now = self.clock()

        def change(window: Window | None) -> tuple[Window, float]:
            current = self._open(window, now)
            opened = current.opened
            if reset_in is not None and reset_in > 0:
                opened = max(opened, now + reset_in - WINDOW)
            used = max(current.used, self.per_minute - left)
            return Window(opened, used), 0.0

        self.book.update(change)

    def penalise(self, wait: float) -> None:
        """monday refused a request for the budget: take the window as full for ``wait`` seconds."""
        now = self.clock()

        def change(window: Window | None) -> tuple[Window, float]:
            return Window(opened=now + wait - WINDOW - MARGIN, used=self.per_minute), 0.0

        self.book.update(change)

    def usage(self) -> ApiUsage:
        """Points reserved in the current window, and the budget."""
        window = self.book.current()
        now = self.clock()
        used = 0 if window is None or now >= window.opened + WINDOW + MARGIN else window.used
        return ApiUsage(used=used, limit=self.per_minute)
