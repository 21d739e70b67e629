"""The typed SOQL query tree: what :func:`~crmsync.sandbox.salesforce.soql.parse` returns.

Frozen dataclasses, one per construct of the subset the emulator speaks (field paths, literals,
WHERE conditions, COUNT, TYPEOF, ORDER BY, subqueries). Every node that an error can point at
keeps its :class:`Position` in the query text, so evaluation can report a mistake where Salesforce
would. The tree says nothing about objects or fields: names are checked when the query runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


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
