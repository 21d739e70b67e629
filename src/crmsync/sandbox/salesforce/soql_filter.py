"""Which rows a SOQL query keeps, and in what order: WHERE and ORDER BY.

Every literal is checked against its field's type and turned into a comparable key once (a
:class:`~crmsync.sandbox.salesforce.soql_keys.Range` for relative dates), and the WHERE tree
becomes nested Python closures; the rows are then streamed through the predicate and sorted.

Comparison semantics follow Salesforce: text compares case-insensitively and an empty string is
null; ``!=`` and ``NOT IN`` match nulls; ``<``/``>`` never do; a null boolean is false; a missing
parent makes its fields null; relative date literals are day ranges counted from ``now`` in UTC
(``= R`` is inside the range, ``< R`` before it, ``> R`` after it). ``IN (SELECT …)`` runs its
subquery once, as a semi-join (an anti-join with ``NOT``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, time
from typing import Any

from crmsync.sandbox.salesforce.ids import normalize as normalize_id
from crmsync.sandbox.salesforce.soql_keys import (
    ID_TYPES,
    NUMBER_TYPES,
    TEXT_TYPES,
    Range,
    id_key,
    relative_range,
    row_key,
    text_key,
)
from crmsync.sandbox.salesforce.soql_resolve import FieldResolver, Getter, Resolved, Row
from crmsync.sandbox.salesforce.soql_tree import (
    And,
    Comparison,
    Condition,
    FieldPath,
    Includes,
    InList,
    InSelect,
    Like,
    Not,
    Or,
    Value,
)

Predicate = Callable[[Row], bool]

#: the type names Salesforce uses in "must be of type …" messages
_TYPE_WORDS = {"int": "integer", "datetime": "dateTime", "reference": "id", "multipicklist": "string"}


class RowFilter(FieldResolver):
    """The rows a query keeps and their order: WHERE compiled to a predicate, ORDER BY to sort
    keys."""

    # -- literals ----------------------------------------------------------------------------
    def literal(self, path: FieldPath, resolved: Resolved, value: Value) -> Any:
        """The comparable key of ``value`` for the field (a :class:`Range` for relative dates)."""
        ftype = resolved.type
        if value.kind == "null":
            return False if ftype == "boolean" else None
        word = _TYPE_WORDS.get(ftype, "double" if ftype in NUMBER_TYPES else ftype)
        if ftype in TEXT_TYPES or ftype in ID_TYPES or ftype == "multipicklist":
            expected = value.kind == "string"
            quoted = "should be enclosed in quotes"
            word = "string" if ftype in TEXT_TYPES else word
        else:
            expected = (
                (ftype in NUMBER_TYPES and value.kind == "number")
                or (ftype == "boolean" and value.kind == "boolean")
                or (ftype == "date" and value.kind in ("date", "relative"))
                or (ftype == "datetime" and value.kind in ("datetime", "relative"))
            )
            quoted = "should not be enclosed in quotes"
        if not expected:
            raise self.error(
                "INVALID_FIELD",
                value.pos,
                f"value of filter criterion for field '{path.text}' must be of type {word} and {quoted}",
            )
        if ftype in ID_TYPES:
            text = value.value
            # an 18-character id is case-insensitive (its suffix encodes the case of the first 15)
            normalized = normalize_id(text) or (text if len(text) == 18 and text.isalnum() else None)
            if normalized is None:
                if value.value == "":
                    return None
                raise self.error(
                    "INVALID_QUERY_FILTER_OPERATOR", value.pos, f"invalid ID field: {value.value}"
                )
            return normalized.lower()
        if value.kind == "relative":
            start, end = relative_range(value.value, self.today)
            if ftype == "date":
                return Range(start.isoformat(), end.isoformat())
            return Range(datetime.combine(start, time(), UTC), datetime.combine(end, time(), UTC))
        if value.kind == "date":
            return value.value.isoformat()
        return row_key(ftype)(value.value)

    # -- WHERE -------------------------------------------------------------------------------
    def compile(self, cond: Condition) -> Predicate:
        if isinstance(cond, And | Or):
            parts = [self.compile(item) for item in cond.items]
            if len(parts) == 2:  # the common case, without a generator per row
                first, second = parts
                if isinstance(cond, And):
                    return lambda row: first(row) and second(row)
                return lambda row: first(row) or second(row)
            if isinstance(cond, And):
                return lambda row: all(p(row) for p in parts)
            return lambda row: any(p(row) for p in parts)
        if isinstance(cond, Not):
            inner = self.compile(cond.item)
            return lambda row: not inner(row)
        resolved = self.resolve(cond.path)
        get = self.getter(resolved)
        key = row_key(resolved.type)
        if isinstance(cond, Comparison):
            return self._comparison(cond, resolved, get, key)
        if isinstance(cond, InList):
            keys = [self.literal(cond.path, resolved, v) for v in cond.values]
            if any(isinstance(k, Range) for k in keys):
                raise self.error("MALFORMED_QUERY", cond.values[0].pos, "date literals are not allowed in IN")
            if resolved.type == "multipicklist":
                members: list[Any] = keys
                if cond.negated:
                    return lambda row: key(get(row)) not in members
                return lambda row: key(get(row)) in members
            wanted = frozenset(keys)
            if cond.negated:
                return lambda row: key(get(row)) not in wanted
            return lambda row: key(get(row)) in wanted
        if isinstance(cond, InSelect):
            sub = RowFilter(cond.query, self.source, self.now, self.include_deleted)
            sub._parents = self._parents
            (path,) = cond.query.select
            assert isinstance(path, FieldPath)
            picked = sub.resolve(path)
            if picked.type not in ID_TYPES or resolved.type not in ID_TYPES:
                raise self.error(
                    "INVALID_FIELD",
                    path.pos,
                    f"The selected field '{path.text}' in the subquery and the left operand field in the "
                    f"where expression in the outer query '{cond.path.text}' should point to the same "
                    "object type",
                )
            sub_get = sub.getter(picked)
            found = frozenset(k for k in (id_key(sub_get(r)) for r in sub.matching_rows()) if k)
            if cond.negated:
                return lambda row: key(get(row)) not in found
            return lambda row: key(get(row)) in found
        if isinstance(cond, Like):
            if resolved.type not in TEXT_TYPES and resolved.type not in ID_TYPES:
                raise self.error(
                    "INVALID_FIELD",
                    cond.path.pos,
                    f"invalid operator on field '{cond.path.text}': LIKE is for text fields",
                )
            matcher = re.compile(cond.pattern, re.DOTALL).fullmatch
            return lambda row: (v := text_key(get(row))) is not None and matcher(v) is not None
        assert isinstance(cond, Includes)
        if resolved.type != "multipicklist":
            raise self.error(
                "INVALID_FIELD",
                cond.path.pos,
                f"{'EXCLUDES' if cond.excludes else 'INCLUDES'} can only be used on multi-select picklist "
                f"fields, not on '{cond.path.text}'",
            )
        sets = [k for k in (self.literal(cond.path, resolved, v) for v in cond.values) if k]

        def includes(row: Row) -> bool:
            have = key(get(row))
            return have is not None and any(s <= have for s in sets)

        if cond.excludes:
            return lambda row: not includes(row)
        return includes

    def _comparison(
        self, cond: Comparison, resolved: Resolved, get: Getter, key: Callable[[Any], Any]
    ) -> Predicate:
        lit = self.literal(cond.path, resolved, cond.value)
        op = cond.op
        if isinstance(lit, Range):
            lo, hi = lit.start, lit.end

            def inside(row: Row) -> bool:
                v = key(get(row))
                return v is not None and bool(lo <= v < hi)

            if op == "=":
                return inside
            if op == "!=":
                return lambda row: not inside(row)
            bound, after = {"<": (lo, False), "<=": (hi, False), ">": (hi, True), ">=": (lo, True)}[op]
            if after:
                return lambda row: (v := key(get(row))) is not None and v >= bound
            return lambda row: (v := key(get(row))) is not None and v < bound
        if op == "=":
            return lambda row: key(get(row)) == lit
        if op == "!=":
            return lambda row: key(get(row)) != lit
        if lit is None:
            return lambda row: False
        compare: Callable[[Any, Any], bool] = {
            "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b,
            ">": lambda a, b: a > b,
            ">=": lambda a, b: a >= b,
        }[op]
        return lambda row: (v := key(get(row))) is not None and compare(v, lit)

    def matching_rows(self) -> list[Row]:
        """The rows the WHERE clause keeps, in ORDER BY order (before LIMIT/OFFSET)."""
        query = self.query
        predicate = self.compile(query.where) if query.where is not None else None
        order = [(self.resolve(item.path), item) for item in query.order_by]
        rows: Iterable[Row] = self.source.rows(self.object_name, self.include_deleted)
        matched = [row for row in rows if predicate(row)] if predicate is not None else list(rows)
        for resolved, item in reversed(order):  # stable sorts, last key first
            matched.sort(
                key=self._sort_key(resolved, item.descending, item.effective_nulls_first),
                reverse=item.descending,
            )
        return matched

    def _sort_key(self, resolved: Resolved, descending: bool, nulls_first: bool) -> Callable[[Row], Any]:
        get = self.getter(resolved)
        key = row_key(resolved.type)
        # with reverse=True the larger null rank comes first
        null_rank, value_rank = (0, 1) if nulls_first != descending else (1, 0)

        def sort_key(row: Row) -> tuple[Any, ...]:
            v = key(get(row))
            if v is None:
                return (null_rank,)
            return (value_rank, sorted(v) if isinstance(v, frozenset) else v)

        return sort_key
