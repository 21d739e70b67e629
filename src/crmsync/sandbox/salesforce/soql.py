"""SOQL for the Salesforce emulator: the public interface, :func:`parse` and :func:`execute`.

:func:`parse` turns query text into a :class:`Query` (cached by text, so the emulator can call it
on every request); :func:`execute` runs a query against a :class:`QuerySource` (the emulator's
record store) and returns the records shaped as Salesforce returns them. The work is done in
modules of one purpose each, whose names this module exports:

- :mod:`~crmsync.sandbox.salesforce.soql_errors`: :class:`SoqlError`, located in the query text;
- :mod:`~crmsync.sandbox.salesforce.soql_tree`: the typed query tree (:class:`Query` and its parts);
- :mod:`~crmsync.sandbox.salesforce.soql_grammar`: the lark grammar and string literals;
- :mod:`~crmsync.sandbox.salesforce.soql_parse`: parse tree to :class:`Query`, syntax errors;
- :mod:`~crmsync.sandbox.salesforce.soql_source`: what a query runs against, what it returns;
- :mod:`~crmsync.sandbox.salesforce.soql_eval`: evaluation (with ``soql_resolve``, ``soql_keys``
  and ``soql_filter``).

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

from datetime import datetime

from crmsync.sandbox.salesforce.soql_errors import SoqlError, located_error
from crmsync.sandbox.salesforce.soql_eval import run
from crmsync.sandbox.salesforce.soql_grammar import decode_string, like_regex
from crmsync.sandbox.salesforce.soql_parse import MAX_OFFSET, MAX_QUERY_LENGTH, parse
from crmsync.sandbox.salesforce.soql_source import (
    ChildRelationshipSource,
    DescribedQuerySource,
    PolymorphicSource,
    QueryResult,
    QuerySource,
    RecordTypeSource,
)
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
    ValueKind,
)

__all__ = [
    "MAX_OFFSET",
    "MAX_QUERY_LENGTH",
    "And",
    "ChildRelationshipSource",
    "Comparison",
    "Condition",
    "Count",
    "DescribedQuerySource",
    "FieldPath",
    "InList",
    "InSelect",
    "Includes",
    "Like",
    "Not",
    "Or",
    "OrderItem",
    "PolymorphicSource",
    "Position",
    "Query",
    "QueryResult",
    "QuerySource",
    "RecordTypeSource",
    "RelativeDate",
    "SelectItem",
    "SoqlError",
    "TypeOf",
    "TypeOfWhen",
    "Value",
    "ValueKind",
    "decode_string",
    "execute",
    "like_regex",
    "located_error",
    "parse",
]


def execute(
    query: Query, source: QuerySource, *, now: datetime, include_deleted: bool = False
) -> QueryResult:
    """Run ``query`` against ``source``; relative dates (TODAY, LAST_N_DAYS:n …) count from ``now``
    (UTC). ``include_deleted`` is ``/queryAll``. Raises :class:`SoqlError` for unknown objects
    (INVALID_TYPE), unknown fields or relationships and ill-typed filter values (INVALID_FIELD)."""
    return run(query, source, now=now, include_deleted=include_deleted)
