"""What running a SOQL query needs from the record store, and what it gives back.

:class:`QuerySource` is the narrow interface the emulator's store implements for queries (objects,
field types, relationships, rows); the ``runtime_checkable`` protocols next to it are optional
extras that turn on canonical casing, parent-to-child subqueries, real record types and
polymorphic relationships, so a minimal fake source (as in the tests) still runs plain queries.
:class:`QueryResult` is the answer before paging.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


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
