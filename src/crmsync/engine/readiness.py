"""Whether this installation can do its work, and if not why: what ``/readyz`` and ``crmsync status`` say.

Not ready when:

- the store cannot take a write (down, read-only, out of disk space): nothing can be queued;
- a connection refused crmsync's login (an open ``auth:CONNECTION`` alert, raised by the worker);
- a flow is paused (:mod:`crmsync.store.pauses`): its connection needs a person.

Each reason is one line a person can act on. Both are read from the store, so every process of
an installation gives the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.exc import SQLAlchemyError

from crmsync.alerts.checks import AUTH
from crmsync.alerts.state import Problem, open_problems
from crmsync.store.db import Store, StoreTrouble, store_trouble
from crmsync.store.pauses import Pause, list_pauses


@dataclass(frozen=True)
class Readiness:
    store: StoreTrouble | None = None
    login_refused: list[Problem] = field(default_factory=list)
    paused: list[Pause] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return self.store is None and not self.login_refused and not self.paused

    @property
    def reasons(self) -> list[str]:
        """One line per problem, e.g. "Connection sf refused crmsync's credentials: ..." or
        "flow usage paused (sf): ..."."""
        found = [] if self.store is None else [str(self.store)]
        found += [(p.body.splitlines() or [p.title])[0] for p in self.login_refused]
        found += [f"flow {p.flow} paused ({p.connection}): {p.reason}" for p in self.paused]
        return found

    def as_json(self) -> dict[str, object]:
        return {
            "status": "ready" if self.ready else "not ready",
            "reasons": self.reasons,
            "store": "ok" if self.store is None else self.store.kind,
            "login_refused": {p.key.removeprefix(AUTH): p.body for p in self.login_refused},
            "paused_flows": {p.flow: {"connection": p.connection, "reason": p.reason} for p in self.paused},
        }


def blockers(store: Store) -> Readiness:
    """The refused logins and paused flows (raises the store's error if it cannot be read)."""
    refused = [p for p in open_problems(store) if p.key.startswith(AUTH)]
    return Readiness(login_refused=refused, paused=list_pauses(store))


def readiness(store: Store, *, cache_seconds: float = 5.0) -> Readiness:
    """Whether the store takes a write (checked at most every ``cache_seconds``), and the
    :func:`blockers`. Never raises a store error: it is one of the answers."""
    try:
        store.check_writable(cache_seconds=cache_seconds)
        return blockers(store)
    except SQLAlchemyError as exc:
        return Readiness(store=store_trouble(exc, store.shown_url))
