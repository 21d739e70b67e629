"""The ``alerts`` table: one row per problem key, shared by every process of an installation.

::

    (no row) ──raise──► OPEN, unsent ──claim──► OPEN, sent ──(reminder due) claim──► OPEN, sent
                           ▲   │  ▲                 │
                           │   │  └─ send failed ───┘ (claim given back: retried later)
                           │   └──────────── clear ───────────► CLEARED ──raise──► OPEN, unsent
                           └──────────────────────────────────────┘

*Open* is ``cleared_at IS NULL``; *sent* is ``last_sent_at IS NOT NULL``. Each transition runs in
one transaction with the row locked (``SELECT ... FOR UPDATE`` on PostgreSQL and MariaDB; SQLite
serialises writers), so of several processes raising or clearing the same problem at once,
exactly one claims each notification.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from crmsync.store.db import Store
from crmsync.store.schema import alerts

KEY_LENGTH = 200
TITLE_LENGTH = 500

Notice = Literal["problem", "reminder", "resolved"]


@dataclass(frozen=True)
class Problem:
    """An open problem (or, with ``cleared_at`` set, one that has cleared).

    ``count`` is how many times it was raised since it opened; ``last_sent_at`` is when a person
    was last told (None: not yet, e.g. no alert URL is configured or the delivery failed)."""

    key: str
    title: str
    body: str
    opened_at: datetime
    last_sent_at: datetime | None
    cleared_at: datetime | None
    count: int

    @property
    def is_open(self) -> bool:
        return self.cleared_at is None


@dataclass(frozen=True)
class Claim:
    """What a transition asks to be sent: the problem as it now stands, which notice, and the
    ``last_sent_at`` / ``cleared_at`` value to restore if the delivery fails."""

    problem: Problem
    notice: Notice
    previous_sent_at: datetime | None
    claimed_at: datetime


def _problem(row: Row[Any]) -> Problem:
    m = row._mapping  # not attributes: a Row is a tuple, and row.count is tuple.count
    return Problem(
        key=m["key"],
        title=m["title"],
        body=m["body"],
        opened_at=m["opened_at"],
        last_sent_at=m["last_sent_at"],
        cleared_at=m["cleared_at"],
        count=m["count"],
    )


def _locked(conn: Connection, key: str) -> Problem | None:
    row = conn.execute(sa.select(alerts).where(alerts.c.key == key).with_for_update()).first()
    return None if row is None else _problem(row)


def raise_problem(
    store: Store, key: str, title: str, body: str, now: datetime, *, reminder_cutoff: datetime | None
) -> tuple[Problem, Claim | None]:
    """Open ``key`` (or count one more sighting of it) and, when ``reminder_cutoff`` is given and
    a notice is due (never sent, or last sent at or before the cutoff), claim it.

    ``reminder_cutoff`` None means "claim nothing" (no one to tell, or deliveries are paused)."""
    if len(key) > KEY_LENGTH:
        raise ValueError(f"alert key longer than {KEY_LENGTH} characters: {key[:40]!r}...")
    title = title[:TITLE_LENGTH]
    c = alerts.c

    def work(conn: Connection) -> tuple[Problem, Claim | None]:
        current = _locked(conn, key)
        if current is None:
            try:
                with conn.begin_nested():
                    conn.execute(
                        sa.insert(alerts).values(
                            key=key, title=title, body=body, opened_at=now, last_sent_at=None, count=1
                        )
                    )
            except IntegrityError:
                current = _locked(conn, key)  # another process opened it meanwhile
                if current is None:
                    raise
        values: dict[str, Any] = {"title": title, "body": body}
        if current is None or not current.is_open:
            values.update(opened_at=now, last_sent_at=None, cleared_at=None, count=1)
            sent: datetime | None = None
        else:
            values["count"] = c.count + 1
            sent = current.last_sent_at
        due = reminder_cutoff is not None and (sent is None or sent <= reminder_cutoff)
        if due:
            values["last_sent_at"] = now
        conn.execute(sa.update(alerts).where(c.key == key).values(**values))
        after = _locked(conn, key)
        assert after is not None
        if not due:
            return after, None
        return after, Claim(after, "problem" if sent is None else "reminder", sent, now)

    return store.run(work)


def clear_problem(store: Store, key: str, now: datetime, *, notify: bool) -> Claim | None:
    """Close ``key`` if it is open. Returns a claim on the "resolved" notice when a person had
    been told about the problem and ``notify`` is true; None otherwise (nothing to say)."""
    c = alerts.c
    with store.read() as conn:  # the common case, nothing open, costs no write
        if conn.execute(sa.select(c.key).where(c.key == key, c.cleared_at.is_(None))).first() is None:
            return None

    def work(conn: Connection) -> Claim | None:
        current = _locked(conn, key)
        if current is None or not current.is_open:
            return None
        told = current.last_sent_at is not None
        if told and not notify:
            return None  # stay open until the notice can go out
        conn.execute(sa.update(alerts).where(c.key == key).values(cleared_at=now))
        if not told:
            return None
        cleared = replace(current, cleared_at=now)
        return Claim(cleared, "resolved", current.last_sent_at, now)

    return store.run(work)


def give_back(store: Store, claim: Claim) -> None:
    """Undo a claim whose delivery failed, unless the row moved on meanwhile: the next raise
    (or clear) tries again."""
    c = alerts.c
    with store.begin() as conn:
        if claim.notice == "resolved":
            conn.execute(
                sa.update(alerts)
                .where(c.key == claim.problem.key, c.cleared_at == claim.claimed_at)
                .values(cleared_at=None)
            )
        else:
            conn.execute(
                sa.update(alerts)
                .where(c.key == claim.problem.key, c.last_sent_at == claim.claimed_at)
                .values(last_sent_at=claim.previous_sent_at)
            )


def open_problems(store: Store) -> list[Problem]:
    """Every open problem, oldest first."""
    c = alerts.c
    with store.read() as conn:
        rows = conn.execute(sa.select(alerts).where(c.cleared_at.is_(None)).order_by(c.opened_at, c.key))
        return [_problem(r) for r in rows]


def get(store: Store, key: str) -> Problem | None:
    """The row of ``key``, open or cleared."""
    with store.read() as conn:
        row = conn.execute(sa.select(alerts).where(alerts.c.key == key)).first()
    return None if row is None else _problem(row)
