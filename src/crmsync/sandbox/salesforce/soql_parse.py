"""SOQL text to a typed :class:`~crmsync.sandbox.salesforce.soql_tree.Query`.

:func:`parse` runs the grammar of :mod:`crmsync.sandbox.salesforce.soql_grammar` and a lark
transformer that builds the query tree bottom-up, checking on the way what Salesforce checks at
parse time (literal syntax, the OFFSET cap, the query length). Syntax errors are reworded the way
Salesforce words them (``unexpected token: 'X'`` at the token's row and column). The result is
cached by text, so the emulator can call it on every request.
"""

from __future__ import annotations

import functools
import re
from datetime import date, datetime
from typing import Any

from lark import Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from crmsync.sandbox.salesforce.soql_errors import SoqlError, located_error
from crmsync.sandbox.salesforce.soql_grammar import decode_string, like_regex, parser
from crmsync.sandbox.salesforce.soql_tree import (
    And,
    Comparison,
    Condition,
    Count,
    FieldPath,
    Includes,
    InList,
    InSelect,
    Like,
    Not,
    Or,
    OrderItem,
    Position,
    Query,
    RelativeDate,
    SelectItem,
    TypeOf,
    TypeOfWhen,
    Value,
)

MAX_QUERY_LENGTH = 100_000
MAX_OFFSET = 2000


def _pos(token: Token) -> Position:
    return Position(token.line or 1, token.column or 1)


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
        tree = parser().parse(text)
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
