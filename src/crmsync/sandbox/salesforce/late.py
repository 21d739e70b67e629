"""Writes that commit late: the row's SystemModstamp is taken at write time, but queries see the
row (or its new values) only ``seconds`` later, as when a long transaction, a trigger chain or a
bulk job commits after rows stamped later were already read.

Rules pick writes by object and by count (``every``-th matching write, at most ``count`` times).
Until a late write becomes visible, SOQL (``query``, ``queryAll``, Bulk query jobs, parent
lookups) sees the record as it was before it (a late create: not at all). A REST read by id shows
the new values at once. Time is the org's clock, so ``advance_clock`` makes late writes visible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class LateRule:
    seconds: float
    #: only writes to this object (any casing); None: every object
    object_name: str | None = None
    #: every n-th matching write is late (1: all of them)
    every: int = 1
    #: at most this many late writes (None: until cleared)
    count: int | None = None
    matched: int = 0
    fired: int = 0

    def __post_init__(self) -> None:
        if self.seconds <= 0:
            raise ValueError("seconds must be positive")
        if self.every < 1:
            raise ValueError("every must be at least 1")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be at least 1")

    def fires(self, object_name: str) -> bool:
        if self.object_name is not None and self.object_name.lower() != object_name.lower():
            return False
        if self.count is not None and self.fired >= self.count:
            return False
        self.matched += 1
        if self.matched % self.every:
            return False
        self.fired += 1
        return True

    def describe(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "object": self.object_name,
            "every": self.every,
            "count": self.count,
            "fired": self.fired,
        }


class LateCommits:
    """The rules, and the writes not yet visible: record id -> (visible at, row as committed before)."""

    def __init__(self) -> None:
        self.rules: list[LateRule] = []
        self.pending: dict[str, tuple[float, dict[str, Any] | None]] = {}

    def clear(self) -> None:
        self.rules.clear()
        self.pending.clear()

    def on_write(self, object_name: str, record_id: str, old: dict[str, Any] | None, now: float) -> None:
        """A write is about to replace ``old`` (None: a create); the first rule firing delays it."""
        delay = next((rule.seconds for rule in self.rules if rule.fires(object_name)), None)
        held = self.pending.get(record_id)
        if held is not None and held[0] <= now:
            del self.pending[record_id]
            held = None
        if delay is None:
            return  # a write after a late one on the same record becomes visible with it
        visible_at = now + delay
        if held is not None:  # still invisible: the reader keeps seeing the last committed version
            self.pending[record_id] = (max(held[0], visible_at), held[1])
        else:
            self.pending[record_id] = (visible_at, dict(old) if old is not None else None)

    def view(self, record_id: str, row: dict[str, Any], now: float) -> dict[str, Any] | None:
        """What a query sees of ``row`` at ``now``: the row, the version before a late write, or
        None while a late create is not visible."""
        held = self.pending.get(record_id)
        if held is None:
            return row
        if held[0] <= now:
            del self.pending[record_id]
            return row
        return held[1]
