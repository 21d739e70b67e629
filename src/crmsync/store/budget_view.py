"""The shared budgets as people see them: what ``crmsync status`` and the dashboard show.

:mod:`crmsync.store.budgets` keeps the books for the processes that take from them: a window is
one shown row of the ``api_budget`` table plus a ring of hidden rows (its buckets and the vendor's
last report), a semaphore one shown row plus a lease per slot. People want one line per budget
instead: :func:`shown` leaves the hidden rows out and counts a semaphore's use live from its
leases. It only reads, and the books never call it, so it lives apart from them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from crmsync.store import schema as t
from crmsync.store.budgets import IN_FLIGHT, SLOT_MARK, is_bucket


@dataclass(frozen=True)
class Shown:
    """One budget as people see it: ``used`` of ``limit`` in ``window`` of ``connection``."""

    connection: str
    window: str
    used: int
    limit: int | None
    at: dt.datetime


def shown(conn: Connection, now: dt.datetime | None = None) -> list[Shown]:
    """Every budget of the ``api_budget`` table as people see it: the rings' bucket rows and
    Trello's slot rows are left out (their shown rows sum them up), and a semaphore's use is the
    number of its slots held now."""
    now = now or t.utcnow()
    c, le = t.api_budget.c, t.leases.c
    out: list[Shown] = []
    for r in conn.execute(sa.select(t.api_budget).order_by(c.connection, c.window)):
        window = str(r.window)
        if is_bucket(window) or _is_trello_slot(window):
            continue
        used = int(r.used)
        if window.endswith(IN_FLIGHT):
            prefix = f"{window.removesuffix(IN_FLIGHT).strip()}:{r.connection}{SLOT_MARK}"
            used = int(
                conn.execute(
                    sa.select(sa.func.count()).where(
                        le.name.startswith(prefix, autoescape=True), le.until > now
                    )
                ).scalar()
                or 0
            )
        out.append(Shown(str(r.connection), window, used, r.limit_value, r.updated_at))
    return out


def _is_trello_slot(window: str) -> bool:
    return window.startswith("slot ") and window[5:].isdigit()
