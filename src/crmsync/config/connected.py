"""Checks against the connected systems: every object and field a flow names exists there.

``crmsync check`` validates the file on its own; ``crmsync check --connect`` also logs in and runs
these, so that a typo such as ``Quantiy__c`` is reported before anything runs, with its line and
the nearest real name, rather than as a dead letter later::

    crmsync.yaml:44: flows.usage.fields.3.target: Usage__c has no field 'Quantiy__c' on connection
    'salesforce' (did you mean 'Quantity__c'?)

:func:`references` lists what a flow names on each side (the target object and its fields, the
related objects and their reference fields, the lock's parent object; the source board or object
and the fields read from it, written back or tested by ``when``). A :class:`Catalog` per connection
answers what exists: Salesforce from describe calls (one per object, cached), monday from the
board's columns (one query per board, cached). Application connections name nothing to check.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from crmsync.config.models import Config, Flow
from crmsync.errors import ConfigError, CrmsyncError

Key = tuple[str | int, ...]


@dataclass(frozen=True)
class Reference:
    """One name the configuration gives, at ``path``: an object, or a field of ``object``."""

    path: Key
    connection: str
    object: str
    field: str | None = None


@dataclass(frozen=True)
class Problem:
    path: Key
    message: str


class Catalog(Protocol):
    """What one connected system holds."""

    def object_names(self) -> Sequence[str]:
        """Every object (board) name, for suggestions."""
        ...

    def field_names(self, object_name: str) -> Sequence[str] | None:
        """The fields (columns) of ``object_name``; None when there is no such object."""
        ...

    def describe_missing(self, object_name: str) -> str:
        """What to say about an object that does not exist."""
        ...


def suggest(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'X'?)`` for the nearest of ``choices`` (case ignored), or ``""``."""
    by_lower = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean {by_lower[close[0]]!r}?)" if close else ""


def references(cfg: Config) -> list[Reference]:
    """Every object and field the flows name, on the connection that must hold it."""
    out: list[Reference] = []
    for name, flow in cfg.flows.items():
        out.extend(_flow_references(("flows", name), flow))
    return out


def _flow_references(here: Key, flow: Flow) -> Iterator[Reference]:
    target, obj = flow.target, flow.object
    yield Reference((*here, "object"), target, obj)
    for i, m in enumerate(flow.fields):
        yield Reference((*here, "fields", i, "target"), target, obj, m.target)
    if flow.match is not None:
        yield Reference((*here, "match", "field"), target, obj, flow.match.field)
    for j, rel in enumerate(flow.related):
        yield Reference((*here, "related", j, "object"), target, rel.object)
        for k, m in enumerate(rel.fields):
            yield Reference((*here, "related", j, "fields", k, "target"), target, rel.object, m.target)
        for ref in rel.refs:
            yield Reference((*here, "related", j, "refs", ref), target, rel.object, ref)
    if flow.lock is not None:
        yield Reference((*here, "lock", "object"), target, flow.lock.object)
    source = flow.source_object
    if not source:  # an application: its records carry whatever fields it sends
        return
    yield Reference((*here, "source_object"), flow.source, source)
    for i, m in enumerate(flow.fields):
        yield Reference((*here, "fields", i, "source"), flow.source, source, m.source)
    if flow.match is not None and flow.match.source:
        yield Reference((*here, "match", "source"), flow.source, source, flow.match.source)
    if flow.when is not None:
        yield Reference((*here, "when", "field"), flow.source, source, flow.when.field)
    if flow.write_back:
        yield Reference((*here, "write_back"), flow.source, source, flow.write_back)
    for j, rel in enumerate(flow.related):
        for k, m in enumerate(rel.fields):
            yield Reference((*here, "related", j, "fields", k, "source"), flow.source, source, m.source)
        if rel.write_back:
            yield Reference((*here, "related", j, "write_back"), flow.source, source, rel.write_back)


def check_references(refs: Sequence[Reference], catalogs: Mapping[str, Catalog]) -> list[Problem]:
    """The references that name nothing, each with the nearest real name.

    References on a connection without a catalog (an application, or one that could not log in)
    are skipped; the login failure is reported on its own.
    """
    problems: list[Problem] = []
    for ref in refs:
        catalog = catalogs.get(ref.connection)
        if catalog is None:
            continue
        fields = catalog.field_names(ref.object)
        if fields is None:
            if ref.field is None:  # the object's own line says it once; its fields stay quiet
                hint = suggest(ref.object, catalog.object_names())
                problems.append(Problem(ref.path, catalog.describe_missing(ref.object) + hint))
            continue
        if ref.field is None or _has_field(catalog, ref.object, ref.field, fields):
            continue
        problems.append(
            Problem(
                ref.path,
                f"{ref.object} has no field {ref.field!r} on connection {ref.connection!r}"
                + suggest(ref.field.split(".")[0], fields),
            )
        )
    return problems


def _has_field(catalog: Catalog, object_name: str, field: str, fields: Sequence[str]) -> bool:
    head, _, rest = field.partition(".")
    if not rest:
        return head.lower() in {f.lower() for f in fields}
    parent = getattr(catalog, "parent_of", None)  # Account.Name: a relationship, then its field
    related = parent(object_name, head) if parent is not None else None
    if related is None:
        return False
    related_fields = catalog.field_names(related)
    return related_fields is not None and _has_field(catalog, related, rest, related_fields)


class SalesforceCatalog:
    """Objects and fields of a Salesforce org, from its describe calls (one per object, cached)."""

    def __init__(self, connector: Any) -> None:
        self.connector = connector
        self._objects: list[str] | None = None
        self._describes: dict[str, dict[str, Any] | None] = {}

    def object_names(self) -> Sequence[str]:
        if self._objects is None:
            body = self.connector.client.request("GET", "sobjects").body
            self._objects = [str(o["name"]) for o in body.get("sobjects", [])]
        return self._objects

    def _describe(self, object_name: str) -> dict[str, Any] | None:
        key = object_name.lower()
        if key not in self._describes:
            try:
                self._describes[key] = dict(self.connector.client.describe(object_name))
            except CrmsyncError as exc:
                if exc.vendor_code not in ("NOT_FOUND", "INVALID_TYPE"):
                    raise
                self._describes[key] = None
        return self._describes[key]

    def field_names(self, object_name: str) -> Sequence[str] | None:
        describe = self._describe(object_name)
        return None if describe is None else [str(f["name"]) for f in describe.get("fields", [])]

    def parent_of(self, object_name: str, relationship: str) -> str | None:
        """The object a relationship name (``Account``, ``Contract__r``) of ``object_name`` leads to."""
        for f in (self._describe(object_name) or {}).get("fields", []):
            name = str(f.get("relationshipName") or "")
            if name.lower() == relationship.lower() and f.get("referenceTo"):
                return str(f["referenceTo"][0])
        return None

    def describe_missing(self, object_name: str) -> str:
        return f"no object {object_name!r} in this Salesforce org"


class MondayCatalog:
    """Boards and columns of a monday account (a board by name or id; columns cached per board)."""

    def __init__(self, connector: Any) -> None:
        self.connector = connector
        self._boards: dict[str, str | None] = {}
        self._missing: dict[str, str] = {}

    def object_names(self) -> Sequence[str]:
        return []  # the lookup's own message lists the boards

    def _board(self, name: str) -> str | None:
        if name not in self._boards:
            try:
                board = str(self.connector.board_id(name))
                self.connector.columns(board)
            except ConfigError as exc:
                self._missing[name] = exc.message
                self._boards[name] = None
            else:
                self._boards[name] = board
        return self._boards[name]

    def field_names(self, object_name: str) -> Sequence[str] | None:
        board = self._board(object_name)
        if board is None:
            return None
        from crmsync.connectors.monday.connector import GROUP, NAME

        return [NAME, GROUP, *self.connector.columns(board)]

    def describe_missing(self, object_name: str) -> str:
        return self._missing.get(object_name, f"no monday board {object_name!r}")


def catalog_for(connection_type: str, connector: Any) -> Catalog | None:
    """The catalog of a connected system of this type (None: nothing to check, e.g. an app)."""
    if connection_type == "salesforce":
        return SalesforceCatalog(connector)
    if connection_type == "monday":
        return MondayCatalog(connector)
    return None
