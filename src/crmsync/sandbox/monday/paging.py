"""``items_page`` and friends: ``ItemsQuery`` filtering and ordering, and opaque cursors.

The first page fixes the list of matching item ids (a snapshot); each cursor names a snapshot
and an offset. Items deleted meanwhile are skipped on later pages. A snapshot expires ``ttl``
seconds (monday: 60 minutes) after the first page: its cursors then give ``CursorExpiredError``.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from crmsync.sandbox.monday import columns as cols
from crmsync.sandbox.monday.errors import MondayError
from crmsync.sandbox.monday.store import Board, Item

MAX_LIMIT = 500
DEFAULT_CURSOR_TTL = 60 * 60.0
MAX_QUERY_IDS = 100

_RANGE_OPERATORS = ("greater_than", "greater_than_or_equals", "lower_than", "lower_than_or_equal", "between")
OPERATORS = (
    "any_of",
    "not_any_of",
    "is_empty",
    "is_not_empty",
    "contains_text",
    "not_contains_text",
    "starts_with",
    *_RANGE_OPERATORS,
)


def check_limit(limit: int | None) -> int:
    value = 25 if limit is None else limit
    if not 1 <= value <= MAX_LIMIT:
        raise MondayError(
            "InvalidArgumentException",
            f"limit must be between 1 and {MAX_LIMIT}",
            error_data={"argument": "limit", "value": value},
        )
    return value


class CursorStore:
    def __init__(
        self, *, ttl: float = DEFAULT_CURSOR_TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self._snapshots: dict[str, tuple[float, list[int]]] = {}
        self._cursors: dict[str, tuple[str, int]] = {}
        self._lock = threading.Lock()

    def first_page(self, ids: list[int], limit: int) -> tuple[list[int], str | None]:
        page, rest = ids[:limit], ids[limit:]
        if not rest:
            return page, None
        with self._lock:
            self._prune()
            snapshot = secrets.token_hex(8)
            self._snapshots[snapshot] = (self.clock(), ids)
            return page, self._cursor(snapshot, limit)

    def next_page(self, cursor: str, limit: int) -> tuple[list[int], str | None]:
        with self._lock:
            where = self._cursors.get(cursor)
            if where is None:
                raise MondayError(
                    "InvalidArgumentException",
                    "The cursor provided is invalid",
                    error_data={"argument": "cursor"},
                )
            snapshot_id, offset = where
            snapshot = self._snapshots.get(snapshot_id)
            if snapshot is None or self.clock() - snapshot[0] >= self.ttl:
                self._snapshots.pop(snapshot_id, None)
                raise MondayError(
                    "CursorExpiredError",
                    "The cursor provided has expired. Cursors are valid for 60 minutes: "
                    "start over with items_page.",
                    error_data={"cursor": cursor},
                )
            ids = snapshot[1]
            page = ids[offset : offset + limit]
            end = offset + limit
            return page, (self._cursor(snapshot_id, end) if end < len(ids) else None)

    def _cursor(self, snapshot: str, offset: int) -> str:
        token = "MSw" + secrets.token_urlsafe(30)
        self._cursors[token] = (snapshot, offset)
        return token

    def _prune(self) -> None:
        now = self.clock()
        dead = {s for s, (opened, _) in self._snapshots.items() if now - opened >= self.ttl}
        for s in dead:
            del self._snapshots[s]
        if dead:
            self._cursors = {c: w for c, w in self._cursors.items() if w[0] not in dead}

    def clear(self) -> None:
        with self._lock:
            self._snapshots.clear()
            self._cursors.clear()


# -- ItemsQuery -----------------------------------------------------------------------------------
def board_order(board: Board, items: list[Item]) -> list[Item]:
    groups = {g.id: n for n, g in enumerate(board.groups)}
    return sorted(items, key=lambda i: (groups.get(i.group_id, len(groups)), i.position))


def select(board: Board, items: list[Item], query: dict[str, Any] | None, lookup: cols.Lookup) -> list[Item]:
    """Filter and order ``items`` (in board order) by an ``ItemsQuery``."""
    items = board_order(board, items)
    if not query:
        return items
    ids = query.get("ids")
    if ids:
        if len(ids) > MAX_QUERY_IDS:
            raise MondayError(
                "InvalidArgumentException",
                f"ids can hold at most {MAX_QUERY_IDS} item ids",
                error_data={"argument": "ids"},
            )
        wanted = {int(i) for i in ids}
        items = [i for i in items if i.id in wanted]
    if query.get("rules") or query.get("groups"):
        items = [i for i in items if _matches_group(board, i, query, lookup)]
    for order in reversed(query.get("order_by") or []):
        column_id = order.get("column_id")
        reverse = (order.get("direction") or "asc") == "desc"
        items = sorted(items, key=lambda i, c=column_id: _order_key(board, i, c, lookup), reverse=reverse)
    return items


def _matches_group(board: Board, item: Item, query: dict[str, Any], lookup: cols.Lookup) -> bool:
    results = [_matches_rule(board, item, rule, lookup) for rule in query.get("rules") or []]
    results += [_matches_group(board, item, group, lookup) for group in query.get("groups") or []]
    if not results:
        return True
    return any(results) if (query.get("operator") or "and") == "or" else all(results)


def _matches_rule(board: Board, item: Item, rule: dict[str, Any], lookup: cols.Lookup) -> bool:
    column_id = rule.get("column_id")
    operator = rule.get("operator") or "any_of"
    if operator not in OPERATORS:
        raise MondayError(
            "InvalidArgumentException",
            f"Operator {operator} is not supported by the sandbox; supported: {', '.join(OPERATORS)}",
            error_data={"operator": operator},
        )
    raw = rule.get("compare_value")
    compare = raw if isinstance(raw, list) else ([] if raw is None else [raw])
    if column_id == "__last_updated__":
        values = [v for v in compare if v not in ("EXACT",)]
        return _compare(operator, (1, item.updated_at), [(1, _norm_ts(str(v))) for v in values])
    if column_id == "name":
        text, keys, key = item.name, {item.name}, (1, item.name.lower())
        empty = not item.name
    else:
        column = board.column(str(column_id))
        if column is None:
            raise MondayError(
                "InvalidColumnIdException",
                "This column ID doesn't exist for the board",
                error_data={"column_id": column_id, "board_id": board.id},
            )
        stored = item.values.get(column.id)
        text = cols.text_of(column, stored, lookup)
        keys = cols.compare_keys(column, stored, lookup)
        key = cols.sort_key(column, stored, lookup)
        empty = stored is None
        if column.type == "numbers":
            compare_keys = [(1, float(v)) for v in compare if _is_number(v)]
            if operator in _RANGE_OPERATORS:
                return not empty and _compare(operator, key, compare_keys)
    if operator == "is_empty":
        return empty
    if operator == "is_not_empty":
        return not empty
    wanted = {str(v) for v in compare}
    if operator == "any_of":
        return bool(keys & wanted)
    if operator == "not_any_of":
        return not keys & wanted
    if operator == "contains_text":
        return any(w.lower() in text.lower() for w in wanted)
    if operator == "not_contains_text":
        return not any(w.lower() in text.lower() for w in wanted)
    if operator == "starts_with":
        return any(text.lower().startswith(w.lower()) for w in wanted)
    return not empty and _compare(operator, key, [(1, str(v).lower()) for v in compare])


def _compare(operator: str, key: tuple[int, Any], compare: list[tuple[int, Any]]) -> bool:
    if not compare:
        return False
    first = compare[0]
    if operator == "greater_than":
        return key > first
    if operator == "greater_than_or_equals":
        return key >= first
    if operator == "lower_than":
        return key < first
    if operator == "lower_than_or_equal":
        return key <= first
    if operator == "between" and len(compare) >= 2:
        return first <= key <= compare[1]
    return False


def _order_key(board: Board, item: Item, column_id: str | None, lookup: cols.Lookup) -> tuple[Any, ...]:
    if column_id == "__last_updated__":
        return (item.updated_at, item.updated_seq)
    if column_id == "__creation_log__":
        return (item.created_at, item.id)
    if column_id == "name":
        return (item.name.lower(),)
    column = board.column(str(column_id))
    if column is None:
        return (0,)
    return cols.sort_key(column, item.values.get(column.id), lookup)


def _norm_ts(text: str) -> str:
    """``2025-01-02T03:04:05(.123)(Z|+00:00)`` -> ``2025-01-02T03:04:05Z`` (how items store it)."""
    parsed = cols.parse_date_or_datetime(text)
    if parsed is None:
        return text
    if parsed.tzinfo is not None:
        from datetime import UTC

        parsed = parsed.astimezone(UTC)
    return parsed.strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
