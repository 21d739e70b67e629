"""One alert per problem, a reminder while it lasts, one notice when it clears.

A *problem* is named by a key (``dead_letters:leads``, ``auth:salesforce``, ``queue_lag``). Code
that sees something wrong calls :meth:`Alerter.problem` as often as it likes; code that sees it
right again calls :meth:`Alerter.clear`. The state lives in the store (:mod:`.state`), so any
number of processes share it and a person hears about each problem once:

- the first :meth:`~Alerter.problem` of a key sends an alert;
- later calls only count; once ``reminder_after`` has passed since the last message, one of them
  sends a reminder;
- :meth:`~Alerter.clear` of an open key sends one "resolved" notice (only if the person had been
  told: a problem that came and went before any alert went out closes quietly).

A delivery that fails is given back: the next call for the key tries again, at most once per
``retry_after`` from this process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import SecretStr

from crmsync.alerts import state
from crmsync.alerts.state import Claim, Problem
from crmsync.redact import protect, redact_url, scrub
from crmsync.store.db import Store
from crmsync.store.schema import utcnow

if TYPE_CHECKING:
    from crmsync.config.models import AlertsConfig

log = logging.getLogger(__name__)

#: ``notify(title, body, notice) -> delivered``; notice is "problem", "reminder" or "resolved"
Notify = Callable[[str, str, str], bool]

PREFIX = "[crmsync] "


class Alerter:
    """Raises and clears problems; see the module docstring.

    ``urls`` are apprise URLs (plain text or ``SecretStr``). ``notify`` replaces the apprise
    delivery (tests, or a custom channel); without URLs and without ``notify``, problems are
    still recorded (:meth:`open_problems`) but nobody is told.
    """

    def __init__(
        self,
        store: Store,
        urls: Sequence[str | SecretStr],
        *,
        reminder_after: timedelta = timedelta(hours=1),
        clock: Callable[[], datetime] = utcnow,
        notify: Notify | None = None,
        retry_after: timedelta = timedelta(minutes=1),
    ) -> None:
        self.store = store
        self._urls = [u.get_secret_value() if isinstance(u, SecretStr) else u for u in urls]
        protect(self._urls)
        if notify is None and self._urls:
            from crmsync.alerts.delivery import AppriseNotifier

            notify = AppriseNotifier(self._urls)
        self._notify = notify
        self.reminder_after = reminder_after
        self.retry_after = retry_after
        self.clock = clock
        self._failed: dict[str, float] = {}  # key → monotonic time of its last failed delivery
        self._guard = threading.Lock()

    @classmethod
    def from_config(
        cls,
        store: Store,
        config: AlertsConfig,
        *,
        clock: Callable[[], datetime] = utcnow,
        notify: Notify | None = None,
    ) -> Alerter:
        """The alerter of an ``alerts:`` section."""
        return cls(
            store,
            config.urls,
            reminder_after=timedelta(minutes=config.reminder_minutes),
            clock=clock,
            notify=notify,
        )

    def __repr__(self) -> str:
        return f"Alerter({[redact_url(u) for u in self._urls]!r})"

    @property
    def enabled(self) -> bool:
        """True if someone can be told (alert URLs or a ``notify`` function)."""
        return self._notify is not None

    # -- the three calls ------------------------------------------------------------------------

    def problem(self, key: str, title: str, body: str) -> bool:
        """Something is wrong. True if a notification (the alert or a reminder) went out now."""
        now = self.clock()
        can_send = self._notify is not None and not self._paused(key)
        cutoff = now - self.reminder_after if can_send else None
        _, claim = state.raise_problem(
            self.store, key, scrub(title), scrub(body), now, reminder_cutoff=cutoff
        )
        return claim is not None and self._deliver(claim)

    def clear(self, key: str, body: str = "") -> bool:
        """It is right again. True if the "resolved" notice went out now (once, and only if the
        problem was open and a person had been told about it)."""
        now = self.clock()
        can_send = self._notify is not None and not self._paused(key)
        claim = state.clear_problem(self.store, key, now, notify=can_send)
        return claim is not None and self._deliver(claim, scrub(body))

    def open_problems(self) -> list[Problem]:
        """Every open problem, oldest first."""
        return state.open_problems(self.store)

    # -- delivery -------------------------------------------------------------------------------

    def _paused(self, key: str) -> bool:
        with self._guard:
            failed = self._failed.get(key)
        return failed is not None and time.monotonic() - failed < self.retry_after.total_seconds()

    def _deliver(self, claim: Claim, note: str = "") -> bool:
        assert self._notify is not None
        title, body = render(claim, note)
        try:
            delivered = self._notify(title, body, claim.notice)
        except Exception as exc:  # a broken channel must not break the caller
            log.warning("alert %s not delivered: %s", claim.problem.key, scrub(str(exc)))
            delivered = False
        with self._guard:
            if delivered:
                self._failed.pop(claim.problem.key, None)
            else:
                self._failed[claim.problem.key] = time.monotonic()
        if not delivered:
            state.give_back(self.store, claim)
            return False
        log.info("alert sent: %s %s", claim.notice, claim.problem.key)
        return True


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days"


def render(claim: Claim, note: str = "") -> tuple[str, str]:
    """The title and body of a claim's notice; ``note`` is the text given to a clear."""
    p = claim.problem
    lasting = _duration(claim.claimed_at - p.opened_at)
    since = f"since {p.opened_at:%Y-%m-%d %H:%M} UTC"
    if claim.notice == "problem":
        return PREFIX + p.title, p.body
    if claim.notice == "reminder":
        seen = f"seen {p.count} time{'s' if p.count != 1 else ''}"
        return f"{PREFIX}Still: {p.title}", f"{p.body}\n\n(open {since}, {lasting}; {seen})"
    ended = f"It lasted {lasting} ({since})."
    return f"{PREFIX}Resolved: {p.title}", f"{note}\n\n{ended}" if note else ended
