"""Runs a parsed SOQL :class:`~crmsync.sandbox.salesforce.soql.Query` against a record source.

A query is compiled once per execution: every field path is resolved against the source's
describe (canonical casing, relationship hops, type), every literal is checked against the field's
type and turned into a comparable key, and the WHERE tree becomes nested Python closures. The rows
are then streamed through the predicate, sorted, sliced and shaped.

Comparison semantics follow Salesforce: text compares case-insensitively and an empty string is
null; ``!=`` and ``NOT IN`` match nulls; ``<``/``>`` never do; a null boolean is false; a missing
parent makes its fields null; relative date literals are day ranges counted from ``now`` in UTC
(``= R`` is inside the range, ``< R`` before it, ``> R`` after it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from crmsync.sandbox.salesforce.ids import normalize as normalize_id
from crmsync.sandbox.salesforce.soql import (
    And,
    ChildRelationshipSource,
    Comparison,
    Condition,
    Count,
    DescribedQuerySource,
    FieldPath,
    Includes,
    InList,
    InSelect,
    Like,
    Not,
    Or,
    PolymorphicSource,
    Position,
    Query,
    QueryResult,
    QuerySource,
    RecordTypeSource,
    RelativeDate,
    SoqlError,
    TypeOf,
    Value,
    located_error,
)

Row = Mapping[str, Any]
Getter = Callable[[Row], Any]
Predicate = Callable[[Row], bool]

MAX_RELATIONSHIP_DEPTH = 5

TEXT_TYPES = frozenset(
    {"string", "textarea", "email", "phone", "url", "picklist", "combobox", "encryptedstring", "time"}
)
ID_TYPES = frozenset({"id", "reference"})
NUMBER_TYPES = frozenset({"int", "long", "double", "currency", "percent"})

#: the type names Salesforce uses in "must be of type …" messages
#: the ``Name`` object a polymorphic relationship (``What``, ``Who``, ``Owner``) resolves to, and its
#: fields; ``Type`` is the related record's object
NAME_OBJECT = "Name"
NAME_FIELDS = {
    "Id": "id",
    "Name": "string",
    "Type": "picklist",
    "Alias": "string",
    "Email": "email",
    "FirstName": "string",
    "LastName": "string",
    "Phone": "phone",
    "Title": "string",
    "IsActive": "boolean",
}
#: objects whose name field is not ``Name``
_NAME_FIELD = {"Contract": "ContractNumber", "Case": "CaseNumber"}

_TYPE_WORDS = {"int": "integer", "datetime": "dateTime", "reference": "id", "multipicklist": "string"}


def run(query: Query, source: QuerySource, *, now: datetime, include_deleted: bool = False) -> QueryResult:
    return _Execution(query, source, now, include_deleted).run()


@dataclass(frozen=True)
class Hop:
    """One step up a relationship: ``AccountId`` on the current object leads to an ``Account``."""

    ref_field: str
    name: str  # the relationship name as Salesforce spells it in results: "Account", "Contract__r"
    target: str  # NAME_OBJECT for a polymorphic relationship
    #: the objects a polymorphic relationship may point at (empty for an ordinary one)
    targets: tuple[str, ...] = ()

    @property
    def polymorphic(self) -> bool:
        return bool(self.targets)


@dataclass(frozen=True)
class Resolved:
    hops: tuple[Hop, ...]
    field: str
    type: str

    @property
    def key(self) -> str:
        return ".".join([*(h.name for h in self.hops), self.field]).lower()


# -- keys: how each kind of field compares ---------------------------------------------------------


def _text_key(v: Any) -> Any:
    if v is None or v == "":
        return None
    return v.lower() if isinstance(v, str) else str(v).lower()


def _id_key(v: Any) -> Any:
    if not v:
        return None
    if isinstance(v, str) and len(v) == 15:
        v = normalize_id(v) or v
    return str(v).lower()


def _number_key(v: Any) -> Any:
    if v is None or isinstance(v, int | float):
        return v
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _bool_key(v: Any) -> Any:
    return bool(v) if not isinstance(v, str) else v.lower() == "true"


def _date_key(v: Any) -> Any:
    if v is None or v == "":
        return None
    if isinstance(v, datetime):
        return v.date().isoformat()
    if isinstance(v, date):
        return v.isoformat()
    return str(v)[:10]


def _datetime_key(v: Any) -> Any:
    if v is None or v == "":
        return None
    if isinstance(v, datetime):
        return v if v.tzinfo is not None else v.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(v))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _multi_key(v: Any) -> Any:
    if v is None or v == "":
        return None
    return frozenset(part.strip().lower() for part in str(v).split(";") if part.strip())


def row_key(field_type: str) -> Callable[[Any], Any]:
    """How a stored value of ``field_type`` compares and sorts (None stands for null)."""
    if field_type in ID_TYPES:
        return _id_key
    if field_type in NUMBER_TYPES:
        return _number_key
    if field_type == "boolean":
        return _bool_key
    if field_type == "date":
        return _date_key
    if field_type == "datetime":
        return _datetime_key
    if field_type == "multipicklist":
        return _multi_key
    return _text_key


# -- relative dates ----------------------------------------------------------------------------


def _add_months(day: date, months: int) -> date:
    """The first of the month ``months`` after the month of ``day``."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def relative_range(rel: RelativeDate, today: date) -> tuple[date, date]:
    """The days ``[start, end)`` a relative date literal stands for (weeks start on Sunday)."""
    day = timedelta(days=1)
    week = today - timedelta(days=(today.weekday() + 1) % 7)
    month = today.replace(day=1)
    quarter = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    year = date(today.year, 1, 1)
    n = rel.n or 0
    ranges: dict[str, tuple[date, date]] = {
        "YESTERDAY": (today - day, today),
        "TODAY": (today, today + day),
        "TOMORROW": (today + day, today + 2 * day),
        "LAST_WEEK": (week - 7 * day, week),
        "THIS_WEEK": (week, week + 7 * day),
        "NEXT_WEEK": (week + 7 * day, week + 14 * day),
        "LAST_MONTH": (_add_months(month, -1), month),
        "THIS_MONTH": (month, _add_months(month, 1)),
        "NEXT_MONTH": (_add_months(month, 1), _add_months(month, 2)),
        "LAST_90_DAYS": (today - 90 * day, today + day),
        "NEXT_90_DAYS": (today + day, today + 91 * day),
        "LAST_QUARTER": (_add_months(quarter, -3), quarter),
        "THIS_QUARTER": (quarter, _add_months(quarter, 3)),
        "NEXT_QUARTER": (_add_months(quarter, 3), _add_months(quarter, 6)),
        "LAST_YEAR": (date(today.year - 1, 1, 1), year),
        "THIS_YEAR": (year, date(today.year + 1, 1, 1)),
        "NEXT_YEAR": (date(today.year + 1, 1, 1), date(today.year + 2, 1, 1)),
        "LAST_N_DAYS": (today - n * day, today + day),
        "NEXT_N_DAYS": (today + day, today + (n + 1) * day),
        "N_DAYS_AGO": (today - n * day, today - (n - 1) * day),
        "LAST_N_WEEKS": (week - 7 * n * day, week),
        "NEXT_N_WEEKS": (week + 7 * day, week + 7 * (n + 1) * day),
        "N_WEEKS_AGO": (week - 7 * n * day, week - 7 * (n - 1) * day),
        "LAST_N_MONTHS": (_add_months(month, -n), month),
        "NEXT_N_MONTHS": (_add_months(month, 1), _add_months(month, n + 1)),
        "N_MONTHS_AGO": (_add_months(month, -n), _add_months(month, 1 - n)),
        "LAST_N_YEARS": (date(today.year - n, 1, 1), year),
        "NEXT_N_YEARS": (date(today.year + 1, 1, 1), date(today.year + n + 1, 1, 1)),
        "N_YEARS_AGO": (date(today.year - n, 1, 1), date(today.year - n + 1, 1, 1)),
    }
    return ranges[rel.name]


@dataclass(frozen=True)
class _Range:
    start: Any
    end: Any  # exclusive


# -- the execution -----------------------------------------------------------------------------


class _Execution:
    def __init__(
        self,
        query: Query,
        source: QuerySource,
        now: datetime,
        include_deleted: bool,
        *,
        object_name: str | None = None,
    ) -> None:
        self.query = query
        self.source = source
        self.now = now
        self.today = (now if now.tzinfo is not None else now.replace(tzinfo=UTC)).astimezone(UTC).date()
        self.include_deleted = include_deleted
        self.base = f"/services/data/v{source.api_version}/sobjects"
        self._field_maps: dict[str, dict[str, str]] = {}
        self._parents: dict[tuple[str, str], Row | None] = {}
        self.object_name = object_name or self._object(query.object_name, query.object_pos)

    # -- errors and names ------------------------------------------------------------------
    def error(self, code: str, pos: Position, detail: str) -> SoqlError:
        return located_error(code, self.query.text, pos.line, pos.column, detail)

    def _object(self, name: str, pos: Position) -> str:
        canonical = name
        if isinstance(self.source, DescribedQuerySource):
            names = {n.lower(): n for n in self.source.object_names()}
            canonical = names.get(name.lower(), name)
        if self.source.object_exists(canonical):
            return canonical
        if canonical != name and self.source.object_exists(name):
            return name
        raise self.error(
            "INVALID_TYPE",
            pos,
            f"sObject type '{name}' is not supported. If you are attempting to use a custom object, be "
            "sure to append the '__c' after the entity name. Please reference your WSDL or the describe "
            "call for the appropriate names.",
        )

    def _field_map(self, obj: str) -> dict[str, str]:
        names = self._field_maps.get(obj)
        if names is None:
            if isinstance(self.source, DescribedQuerySource):
                found: Iterable[str] = self.source.field_names(obj)
            else:
                first = next(iter(self.source.rows(obj, True)), None)
                found = first.keys() if first is not None else ()
            names = self._field_maps[obj] = {n.lower(): n for n in found}
        return names

    def _field(self, obj: str, name: str) -> tuple[str, str] | None:
        """(canonical name, describe type) of field ``name`` on ``obj``, any casing."""
        if obj == NAME_OBJECT:
            return next(((n, t) for n, t in NAME_FIELDS.items() if n.lower() == name.lower()), None)
        canonical = self._field_map(obj).get(name.lower(), name)
        for candidate in dict.fromkeys((canonical, name)):
            field_type = self.source.field_type(obj, candidate)
            if field_type is not None:
                return candidate, field_type
        return None

    def _hop(self, obj: str, name: str, pos: Position) -> Hop:
        hop = self._plain_hop(obj, name, pos)
        if isinstance(self.source, PolymorphicSource):
            targets = self.source.polymorphic_targets(obj, hop.ref_field)
            if targets:
                return Hop(hop.ref_field, hop.name, NAME_OBJECT, tuple(targets))
        return hop

    def _plain_hop(self, obj: str, name: str, pos: Position) -> Hop:
        lower = name.lower()
        ref_name = name[:-3] + "__c" if lower.endswith("__r") else name + "Id"
        ref = self._field(obj, ref_name)
        if ref is not None and ref[1] == "reference":
            ref_field = ref[0]
            rel_name = ref_field[:-3] + "__r" if ref_field.lower().endswith("__c") else ref_field[:-2]
            for candidate in dict.fromkeys((rel_name, name)):
                found = self.source.relationship(obj, candidate)
                if found is not None:
                    return Hop(found[0], rel_name, found[1])
        found = self.source.relationship(obj, name) if obj != NAME_OBJECT else None
        if found is not None:
            return Hop(found[0], name, found[1])
        raise self.error(
            "INVALID_FIELD",
            pos,
            f"Didn't understand relationship '{name}' in field path. If you are attempting to use a "
            "custom relationship, be sure to append the '__r' after the custom relationship name. Please "
            "reference your WSDL or the describe call for the appropriate names.",
        )

    def resolve(self, path: FieldPath) -> Resolved:
        parts = path.parts
        own_name = len(parts) > 1 and parts[0].lower() == self.object_name.lower()
        if own_name and self.source.relationship(self.object_name, parts[0]) is None:
            parts = parts[1:]  # "Account.Name" FROM Account: the object's own name may qualify its fields
        if len(parts) - 1 > MAX_RELATIONSHIP_DEPTH:
            raise self.error(
                "MALFORMED_QUERY",
                path.pos,
                f"SOQL statements cannot query relationships more than {MAX_RELATIONSHIP_DEPTH} levels away",
            )
        obj = self.object_name
        hops: list[Hop] = []
        for name in parts[:-1]:
            hop = self._hop(obj, name, path.pos)
            hops.append(hop)
            obj = hop.target
        found = self._field(obj, parts[-1])
        if found is None:
            raise self.error(
                "INVALID_FIELD",
                path.pos,
                f"No such column '{parts[-1]}' on entity '{obj}'. If you are attempting to use a custom "
                "field, be sure to append the '__c' after the custom field name. Please reference your "
                "WSDL or the describe call for the appropriate names.",
            )
        return Resolved(tuple(hops), found[0], found[1])

    # -- reading values ----------------------------------------------------------------------
    def parent(self, obj: str, record_id: Any) -> Row | None:
        key = (obj, str(record_id))
        try:
            return self._parents[key]
        except KeyError:
            row = self._parents[key] = self.source.get(obj, str(record_id))
            return row

    def object_of(self, record_id: str, default: str) -> str:
        if isinstance(self.source, RecordTypeSource):
            return self.source.object_of(record_id) or default
        return default

    def name_row(self, hop: Hop, record_id: Any) -> Row | None:
        """The ``Name`` object for the record a polymorphic reference points at."""
        key = (NAME_OBJECT, str(record_id))
        if key in self._parents:
            return self._parents[key]
        rec = self.source.get(hop.targets[0], str(record_id))
        view: dict[str, Any] | None = None
        if rec is not None:
            obj = self.object_of(str(rec.get("Id") or record_id), hop.targets[0])
            view = {n: rec.get(n) for n in NAME_FIELDS}
            view["Name"] = rec.get(_NAME_FIELD.get(obj, "Name"))
            view["Type"] = obj
        self._parents[key] = view
        return view

    def follow(self, hop: Hop, ref: Any) -> Row | None:
        """The parent row (or ``Name`` view) a reference value leads to."""
        return self.name_row(hop, ref) if hop.polymorphic else self.parent(hop.target, ref)

    def getter(self, resolved: Resolved) -> Getter:
        name = resolved.field
        if not resolved.hops:
            return lambda row: row.get(name)
        hops = resolved.hops
        follow = self.follow

        def get(row: Row) -> Any:
            current: Row | None = row
            for hop in hops:
                ref = current.get(hop.ref_field) if current is not None else None
                if ref is None:
                    return None
                current = follow(hop, ref)
            return current.get(name) if current is not None else None

        return get

    # -- literals ----------------------------------------------------------------------------
    def literal(self, path: FieldPath, resolved: Resolved, value: Value) -> Any:
        """The comparable key of ``value`` for the field (a :class:`_Range` for relative dates)."""
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
                return _Range(start.isoformat(), end.isoformat())
            return _Range(datetime.combine(start, time(), UTC), datetime.combine(end, time(), UTC))
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
            if any(isinstance(k, _Range) for k in keys):
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
            sub = _Execution(cond.query, self.source, self.now, self.include_deleted)
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
            found = frozenset(k for k in (_id_key(sub_get(r)) for r in sub.matching_rows()) if k)
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
            return lambda row: (v := _text_key(get(row))) is not None and matcher(v) is not None
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
        if isinstance(lit, _Range):
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

    # -- the whole query ---------------------------------------------------------------------
    def run(self) -> QueryResult:
        query = self.query
        counts = [item for item in query.select if isinstance(item, Count)]
        others = [item for item in query.select if not isinstance(item, Count)]
        if counts and counts[0].path is None and len(query.select) > 1:
            raise self.error("MALFORMED_QUERY", counts[0].pos, "COUNT() cannot be combined with other fields")
        if counts and others:
            first = others[0]
            if isinstance(first, FieldPath):
                pos, text = first.pos, first.text
            elif isinstance(first, TypeOf):
                pos, text = first.pos, f"TYPEOF {first.relationship.text}"
            else:
                pos, text = first.object_pos, "(SELECT)"
            raise self.error("MALFORMED_QUERY", pos, f"Field must be grouped or aggregated: {text}")
        selected = self.select(others)
        matched = self.matching_rows()
        start = query.offset or 0
        end = start + query.limit if query.limit is not None else None
        matched = matched[start:end]
        if counts:
            return self._aggregate(counts, matched)
        return QueryResult([self.shape(row, selected) for row in matched], len(matched))

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

    def select(self, items: list[FieldPath | Query | TypeOf]) -> list[Selected]:
        selected: list[Selected] = []
        seen: set[str] = set()
        for item in items:
            entry: Selected
            if isinstance(item, Query):
                entry = self._children(item)
                key, pos, text = entry.name.lower(), item.object_pos, item.object_name
            elif isinstance(item, TypeOf):
                entry = self._typeof(item)
                key, pos, text = entry.hop.name.lower(), item.pos, item.relationship.text
            else:
                entry = self.resolve(item)
                key, pos, text = entry.key, item.pos, item.text
            if key in seen:
                raise self.error("MALFORMED_QUERY", pos, f"duplicate field selected: {text}")
            seen.add(key)
            selected.append(entry)
        typeofs = {e.hop.name.lower(): e for e in selected if isinstance(e, _TypeOf)}
        for entry in selected:
            if isinstance(entry, Resolved) and entry.hops and entry.hops[0].name.lower() in typeofs:
                found = typeofs[entry.hops[0].name.lower()]
                raise self.error(
                    "MALFORMED_QUERY",
                    found.pos,
                    f"TYPEOF field '{found.hop.name}' cannot also be referenced in the field list",
                )
        return selected

    def _typeof(self, item: TypeOf) -> _TypeOf:
        """A TYPEOF clause: one polymorphic relationship of this object, fields per runtime type."""
        rel = item.relationship
        if len(rel.parts) != 1:
            raise self.error("MALFORMED_QUERY", rel.pos, f"TYPEOF takes a relationship of {self.object_name}")
        hop = self._hop(self.object_name, rel.parts[0], rel.pos)
        if not hop.polymorphic:
            raise self.error(
                "INVALID_FIELD",
                rel.pos,
                f"TYPEOF field '{rel.text}' is not a polymorphic relationship on entity '{self.object_name}'",
            )
        whens: dict[str, tuple[_Execution, list[Selected]]] = {}
        for when in item.whens:
            target = next((t for t in hop.targets if t.lower() == when.object_name.lower()), None)
            if target is None:
                raise self.error(
                    "INVALID_TYPE",
                    when.pos,
                    f"'{when.object_name}' is not a type of {rel.text}: it can be {', '.join(hop.targets)}",
                )
            if target.lower() in whens:
                raise self.error("MALFORMED_QUERY", when.pos, f"duplicate WHEN type: {when.object_name}")
            sub = _Execution(self.query, self.source, self.now, self.include_deleted, object_name=target)
            sub._parents = self._parents
            whens[target.lower()] = (sub, sub.select(list(when.fields)))
        other = _Execution(self.query, self.source, self.now, self.include_deleted, object_name=NAME_OBJECT)
        other._parents = self._parents
        return _TypeOf(self, hop, item.pos, whens, other, other.select(list(item.else_fields)))

    def _children(self, sub: Query) -> _Children:
        found = None
        if isinstance(self.source, ChildRelationshipSource):
            found = self.source.child_relationship(self.object_name, sub.object_name)
        if found is None:
            raise self.error(
                "INVALID_TYPE",
                sub.object_pos,
                f"Didn't understand relationship '{sub.object_name}' in FROM part of query call. If you "
                "are attempting to use a custom relationship, be sure to append the '__r' after the custom "
                "relationship name. Please reference your WSDL or the describe call for the appropriate "
                "names.",
            )
        name, child_object, ref_field = found
        execution = _Execution(sub, self.source, self.now, self.include_deleted, object_name=child_object)
        execution._parents = self._parents
        return _Children(
            name, execution, ref_field, execution.select([i for i in sub.select if not isinstance(i, Count)])
        )

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

    def _aggregate(self, counts: list[Count], rows: list[Row]) -> QueryResult:
        first = counts[0]
        if first.path is None:
            return QueryResult([], len(rows))
        record: dict[str, Any] = {"attributes": {"type": "AggregateResult"}}
        unnamed = 0
        for item in counts:
            assert item.path is not None
            get = self.getter(self.resolve(item.path))
            if item.alias is not None:
                name = item.alias
            else:
                name = f"expr{unnamed}"
                unnamed += 1
            record[name] = sum(1 for row in rows if get(row) is not None)
        return QueryResult([record], 1)

    # -- shaping -----------------------------------------------------------------------------
    def _attributes(self, obj: str, record_id: Any) -> dict[str, Any]:
        return {"type": obj, "url": f"{self.base}/{obj}/{record_id}"}

    def _parent_attributes(self, hop: Hop, row: Row) -> dict[str, Any]:
        if hop.polymorphic:  # the Name object, with the URL of the record it stands for
            return {"type": NAME_OBJECT, "url": f"{self.base}/{row.get('Type')}/{row.get('Id')}"}
        obj = self.object_of(str(row["Id"]), hop.target) if row.get("Id") else hop.target
        return self._attributes(obj, row.get("Id"))

    def shape(self, row: Row, selected: list[Selected]) -> dict[str, Any]:
        out: dict[str, Any] = {"attributes": self._attributes(self.object_name, row.get("Id"))}
        for item in selected:
            if isinstance(item, _Children):
                out[item.name] = item.result_for(row)
                continue
            if isinstance(item, _TypeOf):
                out[item.hop.name] = item.shape(row)
                continue
            container = out
            current: Row | None = row
            for hop in item.hops:
                ref = current.get(hop.ref_field) if current is not None else None
                current = self.follow(hop, ref) if ref is not None else None
                nested = container.get(hop.name, ...)
                if nested is ...:  # first field through this relationship: make its record
                    nested = None
                    if current is not None:
                        nested = {"attributes": self._parent_attributes(hop, current)}
                    container[hop.name] = nested
                if nested is None or current is None:
                    break
                container = nested
            else:
                container[item.field] = current.get(item.field) if current is not None else None
        return out


class _TypeOf:
    """A TYPEOF clause compiled: per WHEN type an execution on that object and its fields; the ELSE
    fields read from the ``Name`` object."""

    def __init__(
        self,
        owner: _Execution,
        hop: Hop,
        pos: Position,
        whens: dict[str, tuple[_Execution, list[Selected]]],
        other: _Execution,
        else_selected: list[Selected],
    ) -> None:
        self.owner = owner
        self.hop = hop
        self.pos = pos
        self.whens = whens
        self.other = other
        self.else_selected = else_selected

    def shape(self, row: Row) -> dict[str, Any] | None:
        ref = row.get(self.hop.ref_field)
        view = self.owner.name_row(self.hop, ref) if ref else None
        if view is None:
            return None
        obj = str(view["Type"])
        attributes = self.owner._attributes(obj, view.get("Id"))
        when = self.whens.get(obj.lower())
        if when is not None:
            execution, selected = when
            record = self.owner.parent(obj, ref)
            if record is None:
                return None
            return {**execution.shape(record, selected), "attributes": attributes}
        return {**self.other.shape(view, self.else_selected), "attributes": attributes}


class _Children:
    """A parent-to-child subquery: its rows grouped by parent once, then a page per parent record."""

    def __init__(self, name: str, execution: _Execution, ref_field: str, selected: list[Selected]):
        self.name = name
        self.execution = execution
        self.ref_field = ref_field
        self.selected = selected
        self._groups: dict[Any, list[Row]] | None = None

    def result_for(self, parent: Row) -> dict[str, Any] | None:
        if self._groups is None:
            self._groups = {}
            for row in self.execution.matching_rows():
                self._groups.setdefault(_id_key(row.get(self.ref_field)), []).append(row)
        rows = self._groups.get(_id_key(parent.get("Id")), [])
        query = self.execution.query
        start = query.offset or 0
        rows = rows[start : start + query.limit if query.limit is not None else None]
        if not rows:
            return None
        records = [self.execution.shape(row, self.selected) for row in rows]
        return {"totalSize": len(records), "done": True, "records": records}


Selected = Resolved | _Children | _TypeOf
