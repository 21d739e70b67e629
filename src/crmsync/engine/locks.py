"""Lock rules: once a parent record matches a condition, its children may no longer change.

W3's rule "usage entries are locked once their contract is Fulfilled" is a flow's ``lock``:
``{object: Contract, key: contract_id, when: "Status = 'Fulfilled'"}``. The ingest API asks
before accepting a change (and answers 409), and the worker asks again before writing, because a
change accepted while the target could not be asked must still obey the rule.

One query answers for many parents (``WHERE Id IN :ids AND (<when>)``); answers are cached for
the lock rule's ``cache_seconds`` so that a burst of entries for one contract costs one API call,
not one each.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from typing import Any, Protocol

from crmsync.engine.flows import FlowRuntime


class Queryable(Protocol):
    """A connector that answers SOQL-like views (``:name`` parameters bound by the connector)."""

    def query_view(self, soql_template: str, params: dict[str, Any]) -> list[dict[str, Any]]: ...


def _same_id(record_id: str) -> str:
    """Salesforce ids compare by their first 15 (case-sensitive) characters."""
    return record_id[:15]


class LockChecker:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._cache: dict[tuple[str, str], tuple[bool, float]] = {}
        self._lock = threading.Lock()

    def cached(self, flow: FlowRuntime, parent_ids: Collection[str]) -> set[str] | None:
        """The locked ones among ``parent_ids`` if every answer is cached and fresh, else None."""
        if flow.lock is None:
            return set()
        now = self.clock()
        answer: set[str] = set()
        with self._lock:
            for pid in parent_ids:
                hit = self._cache.get((flow.name, _same_id(pid)))
                if hit is None or hit[1] <= now:
                    return None
                if hit[0]:
                    answer.add(pid)
        return answer

    def locked(self, flow: FlowRuntime, target: Queryable, parent_ids: Collection[str]) -> set[str]:
        """Which of ``parent_ids`` match the flow's lock condition now. Raises what the query raises."""
        if flow.lock is None or not parent_ids:
            return set()
        now = self.clock()
        answer: set[str] = set()
        unknown: list[str] = []
        with self._lock:
            for pid in set(parent_ids):
                hit = self._cache.get((flow.name, _same_id(pid)))
                if hit is not None and hit[1] > now:
                    if hit[0]:
                        answer.add(pid)
                else:
                    unknown.append(pid)
        if unknown:
            matched: set[str] = set()
            ids = sorted(unknown)
            for start in range(0, len(ids), 100):  # SOQL's WHERE clause is limited to 4,000 characters
                rows = target.query_view(
                    f"SELECT Id FROM {flow.lock.object} WHERE Id IN :ids AND ({flow.lock.when})",
                    {"ids": ids[start : start + 100]},
                )
                matched.update(_same_id(str(r["Id"])) for r in rows)
            with self._lock:
                for pid in unknown:
                    is_locked = _same_id(pid) in matched
                    self._cache[(flow.name, _same_id(pid))] = (is_locked, now + flow.lock.cache_seconds)
                    if is_locked:
                        answer.add(pid)
        return answer

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()
