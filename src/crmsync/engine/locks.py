"""Lock rules: once a parent record matches a condition, its children may no longer change.

W3's rule "usage entries are locked once their contract is Fulfilled" is a flow's ``lock``:
``{object: Contract, key: contract_id, when: "Status = 'Fulfilled'"}``. The ingest API asks
before accepting a change (and answers 409), and the worker asks again before writing, because a
change accepted while the target could not be asked must still obey the rule.

The target answers for many parents at once (:meth:`~crmsync.connectors.capabilities.Queryable.matching`:
the condition is the target's own query language, kept in its connector); answers are cached for
the lock rule's ``cache_seconds`` so that a burst of entries for one contract costs one API call,
not one each.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection

from crmsync.connectors.capabilities import Queryable
from crmsync.engine.flows import FlowRuntime

__all__ = ["LockChecker", "Queryable"]


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
            found = target.matching(flow.lock.object, sorted(unknown), flow.lock.when)
            matched = {_same_id(str(i)) for i in found}
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
