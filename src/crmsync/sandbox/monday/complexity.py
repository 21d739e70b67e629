"""Complexity points: what a query costs, and the per-minute budget that pays for it.

monday does not publish its cost formula, so the estimate is a documented approximation with
the properties that matter to a client: every field costs a point, list fields multiply the
cost of what they select by the page size they ask for (``limit``, the number of ``ids``, or
monday's default), and every root mutation costs :data:`MUTATION_COST` on top of its selection.

The budget is a window of 60 s that opens with the first charged call (monday's "sliding
window from the first call"): personal tokens share one budget for reads and writes, app tokens
have one for reads and one for writes, each half of the personal budget (10M vs 5M + 5M). The
clock is injectable so tests can move time instead of waiting.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    value_from_ast_untyped,
)

#: the single-query ceiling
MAX_QUERY_COMPLEXITY = 5_000_000
#: what one root mutation costs before its selection
MUTATION_COST = 10_000
#: personal API token budget per minute on paid plans (trial/free: 1M)
DEFAULT_PER_MINUTE = 10_000_000

#: page size of list fields when the query names none
_DEFAULT_PAGE = {
    "boards": 25,
    "items": 25,
    "items_page": 25,
    "next_items_page": 25,
    "items_page_by_column_values": 25,
    "users": 25,
    "updates": 25,
    "columns": 10,
    "groups": 10,
    "column_values": 10,
    "webhooks": 10,
    "linked_items": 10,
    "subitems": 10,
    "persons_and_teams": 5,
    "values": 5,
    "owners": 2,
    "versions": 5,
    "teams": 10,
}


def estimate(document: DocumentNode, operation_name: str | None, variables: Mapping[str, Any]) -> int:
    """The points the chosen operation of ``document`` costs."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    chosen = next(
        (o for o in operations if operation_name is None or (o.name and o.name.value == operation_name)),
        None,
    )
    if chosen is None:
        return 0
    mutation = chosen.operation.value == "mutation"
    cost = 0
    for field in _fields(chosen.selection_set, fragments):
        cost += _field_cost(field, fragments, variables)
        if mutation:
            cost += MUTATION_COST
    return cost


def _fields(
    selection_set: SelectionSetNode | None, fragments: dict[str, FragmentDefinitionNode]
) -> list[FieldNode]:
    out: list[FieldNode] = []
    if selection_set is None:
        return out
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            out.append(selection)
        elif isinstance(selection, InlineFragmentNode):
            out.extend(_fields(selection.selection_set, fragments))
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is not None:
                out.extend(_fields(fragment.selection_set, fragments))
    return out


def _field_cost(
    field: FieldNode, fragments: dict[str, FragmentDefinitionNode], variables: Mapping[str, Any]
) -> int:
    name = field.name.value
    if name.startswith("__"):
        return 0
    children = sum(_field_cost(f, fragments, variables) for f in _fields(field.selection_set, fragments))
    if not children:
        return 1
    return 1 + _page_size(field, variables) * children


def _page_size(field: FieldNode, variables: Mapping[str, Any]) -> int:
    name = field.name.value
    default = _DEFAULT_PAGE.get(name)
    if default is None:
        return 1
    args = {a.name.value: value_from_ast_untyped(a.value, dict(variables)) for a in field.arguments or ()}
    limit = args.get("limit")
    if isinstance(limit, int) and limit > 0:
        return limit
    ids = args.get("ids")
    if isinstance(ids, list) and ids:
        return len(ids)
    if ids is not None and not isinstance(ids, list):
        return 1
    return default


@dataclass(frozen=True)
class Charge:
    """What ``complexity { before after query reset_in_x_seconds }`` answers for one call."""

    before: int
    after: int
    query: int
    reset_in_x_seconds: int


class BudgetExhausted(Exception):
    def __init__(self, cost: int, left: int, limit: int, retry_in: int) -> None:
        super().__init__(
            f"query cost {cost} budget remaining {left} out of {limit} reset in {retry_in} seconds"
        )
        self.cost = cost
        self.left = left
        self.limit = limit
        self.retry_in = retry_in


class ComplexityBudget:
    """Per-minute budgets, one per (token, kind); ``kind`` is ``all``, ``read`` or ``write``."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic, window: float = 60.0):
        self.per_minute = per_minute
        self.clock = clock
        self.window = window
        self._windows: dict[tuple[str, str], tuple[float, int]] = {}  # -> (opened at, used)
        self._lock = threading.Lock()

    def limit_for(self, kind: str) -> int:
        return self.per_minute if kind == "all" else self.per_minute // 2

    def _current(self, key: tuple[str, str], now: float) -> tuple[float, int] | None:
        opened = self._windows.get(key)
        if opened is None or now - opened[0] >= self.window:
            return None
        return opened

    def charge(self, token: str, kind: str, cost: int) -> Charge:
        """Spend ``cost`` points or raise :class:`BudgetExhausted` (nothing is spent then)."""
        limit = self.limit_for(kind)
        key = (token, kind)
        with self._lock:
            now = self.clock()
            current = self._current(key, now) or (now, 0)
            opened, used = current
            left = limit - used
            reset_in = max(0, math.ceil(opened + self.window - now))
            if cost > left:
                raise BudgetExhausted(cost, left, limit, max(1, reset_in))
            self._windows[key] = (opened, used + cost)
            return Charge(before=left, after=left - cost, query=cost, reset_in_x_seconds=reset_in)

    def peek(self, token: str, kind: str) -> Charge:
        with self._lock:
            now = self.clock()
            current = self._current((token, kind), now)
            limit = self.limit_for(kind)
            if current is None:
                return Charge(limit, limit, 0, 0)
            left = limit - current[1]
            return Charge(left, left, 0, max(0, math.ceil(current[0] + self.window - now)))

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()


class CallLimit:
    """A count of calls per fixed window (requests per minute, calls per day); off when ``limit`` is None."""

    def __init__(self, limit: int | None, window: float, *, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.window = window
        self.clock = clock
        self._opened = 0.0
        self._count = 0
        self._lock = threading.Lock()

    def hit(self) -> int | None:
        """Count a call; the seconds to wait when the limit is passed, else None."""
        if self.limit is None:
            return None
        with self._lock:
            now = self.clock()
            if self._count == 0 or now - self._opened >= self.window:
                self._opened, self._count = now, 0
            self._count += 1
            if self._count > self.limit:
                return max(1, math.ceil(self._opened + self.window - now))
            return None

    def clear(self) -> None:
        with self._lock:
            self._count = 0
