"""The org's API limits, counted by every crmsync process together (:mod:`crmsync.store.budgets`).

Before each call (:meth:`SalesforceBudget.before`):

- **daily calls**: one call is taken from the rolling 24-hour windows of the connection — the org
  share (``daily_limit_share`` of the org's daily limit, which every reply states in
  ``Sforce-Limit-Info: api-usage=N/M``) and, when configured, ``daily_call_budget`` (crmsync's own
  calls). A call that does not fit waits when the wait is short (:data:`MAX_SLEEP`); else it is
  refused with :class:`~crmsync.errors.BudgetExhausted` and the time until it fits, and the worker
  retries the change then (without counting an attempt).
- **requests in flight**: a slot of the connection's ``concurrent_requests`` slots is leased
  (Salesforce refuses requests beyond 25 that run longer than 20 s at once; a request cannot
  know beforehand that it will be long, so every request holds a slot). A request finding all
  slots taken waits for one, at most ``timeout_seconds``, then is retried later.

After each reply (:meth:`SalesforceBudget.after`) the slot is given back and the org's count is
merged in when it tells something new (other programs using the org, or Salesforce's window
rolling on): for 15 minutes the org window holds at least Salesforce's count (plus the requests
in flight) and the calls taken since — so a ``TotalRequests Limit exceeded`` reply, whose count
is past the limit, holds every call back for those 15 minutes; then one call tries again.

Without a store the windows and slots are the process's own (``MemoryBudgets``); the connector's
``attach_store`` shares them.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from crmsync.connectors.base import ApiUsage
from crmsync.connectors.salesforce.settings import SalesforceSettings
from crmsync.errors import BudgetExhausted, RetryLater
from crmsync.store.budgets import BudgetBook, MemoryBudgets, Slots, StoreBudgets, Window
from crmsync.store.db import Store
from crmsync.store.processes import this_process

#: the ``api_budget.window`` labels of the two daily windows and of the request slots
ORG_LABEL = "org calls 24 h"
OWN_LABEL = "crmsync calls 24 h"
SLOTS_LABEL = "requests"
#: a call waits this long at most for the daily budget; longer, it is refused until then
MAX_SLEEP = 5.0
#: extra seconds a request slot is leased beyond the request's timeout
SLOT_MARGIN = 30.0
#: first and longest pause between tries for a request slot
FIRST_POLL = 0.01
LONGEST_POLL = 0.25


@dataclass(frozen=True)
class Held:
    """What :meth:`SalesforceBudget.before` took: the slot (if any) and the window's count after."""

    slot: str | None
    owner: str
    used: int
    #: the org's count as Salesforce last reported it plus the calls taken since (None: no live report)
    reported: int | None = None


class SalesforceBudget:
    """The daily windows and the request slots of one connection."""

    def __init__(
        self,
        connection: str,
        settings: SalesforceSettings,
        book: BudgetBook | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        window_seconds: float = 86_400.0,
    ) -> None:
        self.connection = connection
        self.settings = settings
        self.book: BudgetBook = book if book is not None else MemoryBudgets()
        self.clock = clock
        self.sleep = sleep
        self.window_seconds = window_seconds
        self._lock = threading.Lock()
        #: the org's daily limit, from the last ``Sforce-Limit-Info``
        self.org_limit: int | None = None
        self.waited = 0.0  # seconds slept for the budget or a slot, for metrics and tests
        self.refused = 0  # calls refused for the daily budget

    def attach(self, store: Store) -> None:
        """Share the windows and slots with every process using ``store``."""
        book = StoreBudgets(store)
        self.book.close()
        self.book = book
        slots = self.slots()
        if slots is not None:
            book.show_slots(slots, self.clock())

    # -- what is counted -----------------------------------------------------------------------
    def windows(self) -> list[Window]:
        out = []
        if self.org_limit is not None:
            limit = math.floor(self.org_limit * self.settings.daily_limit_share)
            out.append(Window(self.connection, ORG_LABEL, limit, self.window_seconds))
        if self.settings.daily_call_budget is not None:
            out.append(
                Window(self.connection, OWN_LABEL, self.settings.daily_call_budget, self.window_seconds)
            )
        return out

    def org_window(self) -> Window | None:
        return next((w for w in self.windows() if w.label == ORG_LABEL), None)

    def slots(self) -> Slots | None:
        if not self.settings.concurrent_requests:
            return None
        ttl = self.settings.timeout_seconds + SLOT_MARGIN
        return Slots(self.connection, SLOTS_LABEL, self.settings.concurrent_requests, ttl)

    # -- around each call ----------------------------------------------------------------------
    def before(self, url: str) -> Held:
        """Take a call of the daily windows and a request slot (waiting briefly for either)."""
        owner = f"{this_process()}:{SLOTS_LABEL}:{uuid.uuid4().hex[:12]}"
        slots = self.slots()
        used, reported, slot = self._take(url, slots, owner)
        if slots is None:
            return Held(None, owner, used, reported)
        started = self.clock()
        pause = FIRST_POLL
        while slot is None and (slot := self.book.acquire(slots, owner, self.clock())) is None:
            if self.clock() - started >= self.settings.timeout_seconds:
                raise RetryLater(
                    f"all {slots.limit} request slots of {self.connection!r} stayed taken for "
                    f"{self.settings.timeout_seconds:g} s (concurrent_requests)",
                    url=url,
                    retry_after=self.settings.timeout_seconds,
                )
            self.sleep(pause)
            self._waited(pause)
            pause = min(pause * 2, LONGEST_POLL)
        return Held(slot, owner, used, reported)

    def _take(self, url: str, slots: Slots | None, owner: str) -> tuple[int, int | None, str | None]:
        """A call of the daily windows, and a slot with it when one is free (one transaction)."""
        windows = self.windows()
        if not windows:
            return 0, None, None
        while True:
            taken = self.book.take(windows, 1, self.clock(), slots, owner)
            if taken.granted:
                return taken.used, taken.reported, taken.slot
            if taken.wait > MAX_SLEEP:
                with self._lock:
                    self.refused += 1
                raise BudgetExhausted(
                    f"the daily API budget of {self.connection!r} is spent ({taken.used} calls in the "
                    f"last 24 hours); the next call fits in {taken.wait:.0f} s",
                    url=url,
                    retry_after=taken.wait,
                )
            self.sleep(taken.wait)
            self._waited(taken.wait)

    def _waited(self, seconds: float) -> None:
        with self._lock:
            self.waited += seconds

    def after(self, held: Held, usage: ApiUsage | None, *, spent: bool = False) -> None:
        """Give the slot back and merge the org's count (``usage``: this reply's ``Sforce-Limit-Info``);
        ``spent``: Salesforce refused the call for the daily limit (its count is merged in; without
        one the org window is taken as full)."""
        slots = self.slots()
        if held.slot is not None and slots is not None:
            self.book.release(slots, held.slot, held.owner)
        first = False
        if usage is not None and usage.limit > 0:
            first = self.org_limit is None
            self.org_limit = usage.limit
        window = self.org_window()
        if window is None:
            return
        if usage is None:
            if spent:  # refused for the daily limit, and no count said by how much: full
                self.book.report(window, window.limit, self.clock())
            return
        others = usage.used > held.used  # Salesforce counts calls crmsync did not make
        # its window rolled on (by more than the calls that may still be on their way)
        margin = slots.limit if slots is not None else 0
        lower = held.reported is not None and usage.used + margin < held.reported
        if first or others or lower or spent:
            # calls in flight may not be in Salesforce's count yet: count them on top
            in_flight = self.book.holding(slots, self.clock()) if slots is not None else 0
            self.book.report(window, usage.used + in_flight, self.clock())

    def usage(self) -> ApiUsage | None:
        """The org window's calls and limit (None until the org's limit is known)."""
        window = self.org_window()
        if window is None:
            return None
        return ApiUsage(used=self.book.used(window, self.clock()), limit=window.limit)

    def close(self) -> None:
        self.book.close()
