"""SOQL for the Salesforce emulator: a lark grammar, a typed query tree, and the public interface.

:func:`parse` turns query text into a :class:`Query` (cached by text, so the emulator can call it
on every request); :func:`execute` runs a query against a :class:`QuerySource` (the emulator's
record store) and returns the records shaped as Salesforce returns them. Evaluation lives in
:mod:`crmsync.sandbox.salesforce.soql_eval`.

The subset::

    SELECT field, Parent.field, Parent.Grand.field, (SELECT field FROM ChildRelationship …)
           | TYPEOF Poly WHEN Object THEN field, … [WHEN …] [ELSE field, …] END
           | COUNT() | COUNT(field) [alias]
    FROM Object
    [WHERE cond (AND cond)* | cond (OR cond)* | NOT cond | (…)]   -- AND and OR never mix unbracketed
        cond: path (= != <> < <= > >=) value | path [NOT] IN (values) | path LIKE 'pattern'
              | path INCLUDES|EXCLUDES ('a;b', …) | path [NOT] IN (SELECT idField FROM Object [WHERE …])
        value: 'string' | number | true | false | null | 1999-01-01 | 1999-01-01T23:01:01Z
               | TODAY | LAST_N_DAYS:30 | …
    [ORDER BY path [ASC|DESC] [NULLS FIRST|LAST], …] [LIMIT n] [OFFSET n]

Keywords, objects and fields are case-insensitive. Errors are :class:`SoqlError` with Salesforce's
``errorCode`` and a message located the way Salesforce locates it (the query line, a caret, then
``ERROR at Row:r:Column:c`` and the reason).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal, Protocol, runtime_checkable

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

MAX_QUERY_LENGTH = 100_000
MAX_OFFSET = 2000


class SoqlError(Exception):
    """A query Salesforce would refuse: ``error_code`` and ``message`` as in its 400 reply body."""

    def __init__(self, error_code: str, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        #: Salesforce's ``errorCode``: MALFORMED_QUERY, INVALID_FIELD, INVALID_TYPE, …
        self.error_code = error_code
        #: the full message, located in the query text when a position is known
        self.message = message
        #: the reason alone, without the location lines
        self.detail = detail if detail is not None else message

    def __str__(self) -> str:
        return f"{self.error_code}: {self.message}"


def located_error(error_code: str, text: str, line: int, column: int, detail: str) -> SoqlError:
    """A :class:`SoqlError` whose message points at ``line``/``column`` (1-based) of ``text``."""
    lines = text.splitlines() or [""]
    shown = lines[line - 1] if 0 < line <= len(lines) else lines[-1]
    caret = " " * max(column - 1, 0) + "^"
    message = f"\n{shown}\n{caret}\nERROR at Row:{line}:Column:{column}\n{detail}"
    return SoqlError(error_code, message, detail=detail)


# -- the query tree ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Position:
    line: int
    column: int


@dataclass(frozen=True)
class FieldPath:
    """``Account.Owner.Name`` as written: relationship names, then the field name."""

    parts: tuple[str, ...]
    pos: Position

    @property
    def text(self) -> str:
        return ".".join(self.parts)


ValueKind = Literal["string", "number", "boolean", "null", "date", "datetime", "relative"]


@dataclass(frozen=True)
class RelativeDate:
    """``LAST_N_DAYS:30``: a named range of days relative to today (``n`` None when it takes none)."""

    name: str
    n: int | None = None

    @property
    def text(self) -> str:
        return self.name if self.n is None else f"{self.name}:{self.n}"


@dataclass(frozen=True)
class Value:
    """A literal: ``value`` is str, int/float, bool, None, date, aware datetime or RelativeDate."""

    kind: ValueKind
    value: Any
    raw: str
    pos: Position


@dataclass(frozen=True)
class Comparison:
    path: FieldPath
    op: str  # one of = != < <= > >=   (<> is read as !=)
    value: Value


@dataclass(frozen=True)
class InList:
    path: FieldPath
    values: tuple[Value, ...]
    negated: bool


@dataclass(frozen=True)
class InSelect:
    """``AccountId IN (SELECT Id FROM Account WHERE …)``: a semi-join (anti-join when negated)."""

    path: FieldPath
    query: Query
    negated: bool


@dataclass(frozen=True)
class Like:
    path: FieldPath
    pattern: str  # a regular expression for re.fullmatch of the lower-cased value
    value: Value  # the literal as written


@dataclass(frozen=True)
class Includes:
    path: FieldPath
    values: tuple[Value, ...]
    excludes: bool


@dataclass(frozen=True)
class And:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    item: Condition


Condition = Comparison | InList | InSelect | Like | Includes | And | Or | Not


@dataclass(frozen=True)
class Count:
    """``COUNT()`` (``path`` None) or the aggregate ``COUNT(path) alias``."""

    path: FieldPath | None
    alias: str | None
    pos: Position


@dataclass(frozen=True)
class TypeOfWhen:
    """``WHEN Opportunity THEN Name, StageName`` of a TYPEOF."""

    object_name: str
    pos: Position
    fields: tuple[FieldPath, ...]


@dataclass(frozen=True)
class TypeOf:
    """``TYPEOF What WHEN Account THEN Industry … ELSE Name END``: fields chosen by the runtime
    type of a polymorphic relationship (``else_fields`` are fields of the ``Name`` object)."""

    relationship: FieldPath
    whens: tuple[TypeOfWhen, ...]
    else_fields: tuple[FieldPath, ...]
    pos: Position


@dataclass(frozen=True)
class OrderItem:
    path: FieldPath
    descending: bool = False
    nulls_first: bool | None = None  # None: Salesforce's default (first for ASC, last for DESC)

    @property
    def effective_nulls_first(self) -> bool:
        return (not self.descending) if self.nulls_first is None else self.nulls_first


@dataclass(frozen=True)
class Query:
    """A whole query, or a parent-to-child subquery in a SELECT list (``object_name`` is then the
    child relationship, e.g. ``Contacts``)."""

    text: str
    object_name: str  # as written in FROM
    object_pos: Position
    select: tuple[SelectItem, ...]
    where: Condition | None = None
    order_by: tuple[OrderItem, ...] = ()
    limit: int | None = None
    offset: int | None = None

    @property
    def count_only(self) -> bool:
        """``SELECT COUNT() FROM …``: the answer is ``totalSize`` alone."""
        return any(isinstance(item, Count) and item.path is None for item in self.select)


SelectItem = FieldPath | Count | Query | TypeOf


# -- the grammar -------------------------------------------------------------------------------

_RELATIVE_NAMES = (
    "YESTERDAY|TODAY|TOMORROW|LAST_WEEK|THIS_WEEK|NEXT_WEEK|LAST_MONTH|THIS_MONTH|NEXT_MONTH"
    "|LAST_90_DAYS|NEXT_90_DAYS|LAST_QUARTER|THIS_QUARTER|NEXT_QUARTER|LAST_YEAR|THIS_YEAR|NEXT_YEAR"
)
_RELATIVE_N_NAMES = (
    "LAST_N_DAYS|NEXT_N_DAYS|N_DAYS_AGO|LAST_N_WEEKS|NEXT_N_WEEKS|N_WEEKS_AGO"
    "|LAST_N_MONTHS|NEXT_N_MONTHS|N_MONTHS_AGO|LAST_N_YEARS|NEXT_N_YEARS|N_YEARS_AGO"
)

_GRAMMAR = rf"""
start: "SELECT"i select_list "FROM"i IDENT where? order? limit? offset?

select_list: select_item ("," select_item)*
?select_item: path
            | COUNT "(" ")"                 -> count_all
            | COUNT "(" path ")" IDENT?     -> count_field
            | "(" subquery ")"
            | TYPEOF path typeof_when+ typeof_else? "END"i   -> typeof
typeof_when: "WHEN"i IDENT "THEN"i path ("," path)*
typeof_else: "ELSE"i path ("," path)*
subquery: "SELECT"i sub_list "FROM"i IDENT where? order? limit? offset?
sub_list: path ("," path)*

path: IDENT ("." IDENT)*

where: "WHERE"i expr
?expr: unary
     | unary ("AND"i unary)+   -> and_
     | unary ("OR"i unary)+    -> or_
?unary: "NOT"i unary           -> not_
      | "(" expr ")"
      | condition
?condition: path OP value                          -> compare
          | path "IN"i "(" values ")"              -> in_
          | path "NOT"i "IN"i "(" values ")"       -> not_in
          | path "IN"i "(" semi ")"                -> in_select
          | path "NOT"i "IN"i "(" semi ")"         -> not_in_select
          | path "LIKE"i STRING                    -> like
          | path "INCLUDES"i "(" values ")"        -> includes
          | path "EXCLUDES"i "(" values ")"        -> excludes
semi: "SELECT"i path "FROM"i IDENT where?
values: value ("," value)*
value: STRING | NUMBER | DATE | DATETIME | RELATIVE | RELATIVE_N | TRUE | FALSE | NULL

order: "ORDER"i "BY"i order_item ("," order_item)*
order_item: path DIRECTION? nulls?
nulls: "NULLS"i NULLS_WHERE
limit: "LIMIT"i INT
offset: "OFFSET"i INT

COUNT: "COUNT"i
TYPEOF: "TYPEOF"i
TRUE: "TRUE"i
FALSE: "FALSE"i
NULL: "NULL"i
DIRECTION: "ASC"i | "DESC"i
NULLS_WHERE: "FIRST"i | "LAST"i
OP: "=" | "!=" | "<>" | "<=" | ">=" | "<" | ">"
IDENT: /[A-Za-z][A-Za-z0-9_]*/
STRING: /'(?:[^'\\]|\\[\s\S])*'/
DATETIME.4: /\d{{4}}-\d{{2}}-\d{{2}}T\d{{2}}:\d{{2}}:\d{{2}}(?:\.\d+)?(?:Z|[+-]\d{{2}}:?\d{{2}})/i
DATE.3: /\d{{4}}-\d{{2}}-\d{{2}}(?![\w:.-])/
RELATIVE_N.2: /(?:{_RELATIVE_N_NAMES}):\d+/i
RELATIVE.2: /(?:{_RELATIVE_NAMES})(?![A-Za-z0-9_])/i
NUMBER.1: /[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?![A-Za-z_])/
INT: /\d+/

%import common.WS
%ignore WS
"""


@functools.cache
def _parser() -> Lark:
    # built on first use: importing the module does no work
    return Lark(_GRAMMAR, parser="lalr", lexer="contextual", maybe_placeholders=False)


# -- string literals ---------------------------------------------------------------------------

_ESCAPES = {"'": "'", '"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")


def decode_string(raw: str, *, like: bool = False) -> str:
    """The text of a quoted literal (quotes included in ``raw``).

    With ``like``, ``\\%`` and ``\\_`` stay escaped (as ``\\%``/``\\_``, and a literal backslash as
    ``\\\\``) so :func:`like_regex` can tell them from the wildcards. Any other backslash is an
    error, as in Salesforce.
    """
    body = raw[1:-1]
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1] if i + 1 < len(body) else ""
        if nxt in _ESCAPES:
            decoded = _ESCAPES[nxt]
            out.append("\\\\" if like and decoded == "\\" else decoded)
            i += 2
        elif nxt == "u" and _HEX4.fullmatch(body[i + 2 : i + 6]):
            out.append(chr(int(body[i + 2 : i + 6], 16)))
            i += 6
        elif like and nxt in "%_":
            out.append("\\" + nxt)
            i += 2
        else:
            bad = body[i : i + 2] if nxt != "u" else body[i : i + 6]
            raise SoqlError(
                "MALFORMED_QUERY",
                f"Invalid string literal '{body}'. Illegal character sequence '{bad}' in string literal.",
            )
    return "".join(out)


def like_regex(pattern: str) -> str:
    """A regular expression (for ``re.fullmatch``) from a LIKE pattern decoded with ``like=True``."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return "".join(out)


# -- tree to Query -----------------------------------------------------------------------------


def _pos(token: Token) -> Position:
    return Position(token.line or 1, token.column or 1)


_DATE_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")


@v_args(inline=True)
class _Build(Transformer[Token, Any]):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def _error(self, token: Token, detail: str, code: str = "MALFORMED_QUERY") -> SoqlError:
        return located_error(code, self.text, token.line or 1, token.column or 1, detail)

    # select
    def path(self, *idents: Token) -> FieldPath:
        return FieldPath(tuple(str(t) for t in idents), _pos(idents[0]))

    def select_list(self, *items: SelectItem) -> tuple[SelectItem, ...]:
        return items

    def sub_list(self, *items: FieldPath) -> tuple[FieldPath, ...]:
        return items

    def count_all(self, count: Token) -> Count:
        return Count(None, None, _pos(count))

    def count_field(self, count: Token, path: FieldPath, alias: Token | None = None) -> Count:
        return Count(path, str(alias) if alias is not None else None, _pos(count))

    def typeof(self, keyword: Token, path: FieldPath, *parts: TypeOfWhen | tuple[FieldPath, ...]) -> TypeOf:
        whens = tuple(p for p in parts if isinstance(p, TypeOfWhen))
        others = [p for p in parts if not isinstance(p, TypeOfWhen)]
        return TypeOf(path, whens, others[0] if others else (), _pos(keyword))

    def typeof_when(self, obj: Token, *fields: FieldPath) -> TypeOfWhen:
        return TypeOfWhen(str(obj), _pos(obj), fields)

    def typeof_else(self, *fields: FieldPath) -> tuple[FieldPath, ...]:
        return fields

    # where
    def where(self, expr: Condition) -> tuple[str, Condition]:
        return ("where", expr)

    def and_(self, *items: Condition) -> And:
        return And(items)

    def or_(self, *items: Condition) -> Or:
        return Or(items)

    def not_(self, item: Condition) -> Not:
        return Not(item)

    def compare(self, path: FieldPath, op: Token, value: Value) -> Comparison:
        return Comparison(path, "!=" if op == "<>" else str(op), value)

    def in_(self, path: FieldPath, values: tuple[Value, ...]) -> InList:
        return InList(path, values, negated=False)

    def not_in(self, path: FieldPath, values: tuple[Value, ...]) -> InList:
        return InList(path, values, negated=True)

    def in_select(self, path: FieldPath, query: Query) -> InSelect:
        return InSelect(path, query, negated=False)

    def not_in_select(self, path: FieldPath, query: Query) -> InSelect:
        return InSelect(path, query, negated=True)

    def semi(self, path: FieldPath, obj: Token, *clauses: tuple[str, Any]) -> Query:
        return self.start((path,), obj, *clauses)

    def includes(self, path: FieldPath, values: tuple[Value, ...]) -> Includes:
        return Includes(path, values, excludes=False)

    def excludes(self, path: FieldPath, values: tuple[Value, ...]) -> Includes:
        return Includes(path, values, excludes=True)

    def like(self, path: FieldPath, token: Token) -> Like:
        try:
            # lower-cased here and matched against lower-cased values: the same folding as "="
            pattern = like_regex(decode_string(str(token), like=True).lower())
        except SoqlError as exc:
            raise self._error(token, exc.detail) from None
        return Like(path, pattern, Value("string", str(token), str(token), _pos(token)))

    def values(self, *values: Value) -> tuple[Value, ...]:
        return values

    def value(self, token: Token) -> Value:
        raw = str(token)
        pos = _pos(token)
        kind = token.type
        if kind == "STRING":
            try:
                return Value("string", decode_string(raw), raw, pos)
            except SoqlError as exc:
                raise self._error(token, exc.detail) from None
        if kind == "NUMBER":
            number: int | float = float(raw) if any(c in raw for c in ".") else int(raw)
            return Value("number", number, raw, pos)
        if kind in ("TRUE", "FALSE"):
            return Value("boolean", kind == "TRUE", raw, pos)
        if kind == "NULL":
            return Value("null", None, raw, pos)
        if kind == "DATE":
            try:
                return Value("date", date.fromisoformat(raw), raw, pos)
            except ValueError:
                raise self._error(token, f"invalid date literal '{raw}'") from None
        if kind == "DATETIME":
            try:
                parsed = datetime.fromisoformat(raw.upper().replace("Z", "+00:00"))
            except ValueError:
                raise self._error(token, f"invalid dateTime literal '{raw}'") from None
            return Value("datetime", parsed, raw, pos)
        if kind == "RELATIVE":
            return Value("relative", RelativeDate(raw.upper()), raw, pos)
        # RELATIVE_N
        name, _, n = raw.partition(":")
        return Value("relative", RelativeDate(name.upper(), int(n)), raw, pos)

    # order, limit, offset
    def order(self, *items: OrderItem) -> tuple[str, tuple[OrderItem, ...]]:
        return ("order", items)

    def order_item(self, path: FieldPath, *rest: Token | bool) -> OrderItem:
        descending = False
        nulls_first: bool | None = None
        for part in rest:
            if isinstance(part, bool):
                nulls_first = part
            else:
                descending = part.upper() == "DESC"
        return OrderItem(path, descending, nulls_first)

    def nulls(self, where: Token) -> bool:
        return where.upper() == "FIRST"

    def limit(self, n: Token) -> tuple[str, int]:
        return ("limit", int(n))

    def offset(self, n: Token) -> tuple[str, int]:
        if int(n) > MAX_OFFSET:
            raise SoqlError("NUMBER_OUTSIDE_VALID_RANGE", f"Maximum SOQL offset allowed is {MAX_OFFSET}")
        return ("offset", int(n))

    def start(self, select: tuple[SelectItem, ...], obj: Token, *clauses: tuple[str, Any]) -> Query:
        parts = dict(clauses)
        return Query(
            text=self.text,
            object_name=str(obj),
            object_pos=_pos(obj),
            select=select,
            where=parts.get("where"),
            order_by=parts.get("order", ()),
            limit=parts.get("limit"),
            offset=parts.get("offset"),
        )

    subquery = start


def _syntax_error(text: str, exc: UnexpectedInput) -> SoqlError:
    line = getattr(exc, "line", None) or 1
    column = getattr(exc, "column", None) or 1
    if isinstance(exc, UnexpectedEOF) or (isinstance(exc, UnexpectedToken) and exc.token.type == "$END"):
        lines = text.splitlines() or [""]
        line, column = len(lines), len(lines[-1]) + 1
        detail = "unexpected token: '<EOF>'"
    elif isinstance(exc, UnexpectedToken):
        detail = f"unexpected token: '{exc.token}'"
    elif isinstance(exc, UnexpectedCharacters):
        rest = text[exc.pos_in_stream :]
        if rest.startswith("'"):
            detail = f"line {line}:{column} mismatched character '<EOF>' expecting '''"
        else:
            word = re.match(r"[^\s,()]+", rest)
            detail = f"unexpected token: '{word.group(0) if word else rest[:1]}'"
    else:
        detail = "unexpected token"
    return located_error("MALFORMED_QUERY", text, line, column, detail)


@functools.lru_cache(maxsize=1024)
def parse(text: str) -> Query:
    """The :class:`Query` for ``text``; :class:`SoqlError` (MALFORMED_QUERY) when Salesforce would
    refuse its syntax. Field and object names are checked by :func:`execute`, against a source."""
    if len(text) > MAX_QUERY_LENGTH:
        raise SoqlError(
            "MALFORMED_QUERY",
            f"SOQL statements cannot be longer than {MAX_QUERY_LENGTH} characters",
        )
    if not text.strip():
        raise SoqlError("MALFORMED_QUERY", "unexpected token: '<EOF>'")
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(text, exc) from None
    try:
        query = _Build(text).transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, SoqlError):
            raise exc.orig_exc from None
        raise
    assert isinstance(query, Query)
    return query


# -- what execute needs, and what it returns -----------------------------------------------------


class QuerySource(Protocol):
    """The record store a query runs against (the emulator implements it)."""

    api_version: str  # e.g. "66.0", for the records' attribute URLs

    def object_exists(self, object_name: str) -> bool: ...

    def field_type(self, object_name: str, field: str) -> str | None:
        """The describe type ("id", "string", "date", "reference", …), None if no such field."""

    def relationship(self, object_name: str, relationship_name: str) -> tuple[str, str] | None:
        """("AccountId", "Account") for (Opportunity, Account): the reference field and its target."""

    def rows(self, object_name: str, include_deleted: bool) -> Iterable[Mapping[str, Any]]:
        """The records as wire-format dicts keyed by canonical API field names."""

    def get(self, object_name: str, record_id: str) -> Mapping[str, Any] | None: ...


@runtime_checkable
class DescribedQuerySource(Protocol):
    """Optional extras of a :class:`QuerySource`: canonical names, so that names written in any case
    come back in describe casing even for objects with no records yet. Without them the casing is
    taken from the records themselves (or left as written)."""

    def field_names(self, object_name: str) -> Iterable[str]: ...

    def object_names(self) -> Iterable[str]: ...


@runtime_checkable
class ChildRelationshipSource(Protocol):
    """Optional: parent-to-child subqueries (``SELECT Name, (SELECT LastName FROM Contacts) FROM
    Account``) need the child relationships; without this method they are INVALID_TYPE."""

    def child_relationship(self, object_name: str, relationship_name: str) -> tuple[str, str, str] | None:
        """("Contacts", "Contact", "AccountId") for (Account, contacts): the canonical relationship
        name, the child object and its reference field; None if ``object_name`` has no such child
        relationship (any casing)."""


@runtime_checkable
class RecordTypeSource(Protocol):
    """Optional: the object a record id belongs to, so a polymorphic parent (``Task.What``) gets its
    real type in ``attributes``; without it the relationship's declared target is used."""

    def object_of(self, record_id: str) -> str | None: ...


@runtime_checkable
class PolymorphicSource(Protocol):
    """Optional: which reference fields are polymorphic (``Task.WhatId``). Their relationship
    resolves to the ``Name`` object (``Id``, ``Name``, ``Type`` = the related record's object …),
    usable in ``WHERE What.Type IN (…)`` and in ``TYPEOF``; without this method every relationship
    resolves to its declared target."""

    def polymorphic_targets(self, object_name: str, field: str) -> tuple[str, ...]:
        """The objects ``object_name.field`` may point at when it is polymorphic, else ()."""


@dataclass
class QueryResult:
    #: the records, shaped as Salesforce returns them (``attributes`` first, parents nested)
    records: list[dict[str, Any]] = field(default_factory=list)
    #: how many rows the query returns (after LIMIT/OFFSET); for COUNT() the count
    total_size: int = 0


def execute(
    query: Query, source: QuerySource, *, now: datetime, include_deleted: bool = False
) -> QueryResult:
    """Run ``query`` against ``source``; relative dates (TODAY, LAST_N_DAYS:n …) count from ``now``
    (UTC). ``include_deleted`` is ``/queryAll``. Raises :class:`SoqlError` for unknown objects
    (INVALID_TYPE), unknown fields or relationships and ill-typed filter values (INVALID_FIELD)."""
    from crmsync.sandbox.salesforce import soql_eval  # soql_eval imports this module's types

    return soql_eval.run(query, source, now=now, include_deleted=include_deleted)
