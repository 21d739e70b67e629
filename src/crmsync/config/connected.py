"""Checks against the connected systems: every object and field a flow names exists there.

``crmsync check`` validates the file on its own; ``crmsync check --connect`` also logs in and runs
these, so that a typo such as ``Quantiy__c`` is reported before anything runs, with its line and
the nearest real name, rather than as a dead letter later::

    crmsync.yaml:44: flows.usage.fields.3.target: Usage__c has no field 'Quantiy__c' on connection
    'salesforce' (did you mean 'Quantity__c'?)

:func:`references` lists what a flow names on each side (the target object and its fields, the
related objects and their reference fields, the lock's parent object; the source board or object
and the fields read from it, written back or tested by ``when``). A
:class:`~crmsync.connectors.capabilities.Catalog` per connection answers what exists: the
connector's own, when it is :class:`~crmsync.connectors.capabilities.Catalogued` (Salesforce from
describe calls, monday from the board's columns; each cached). Other connections are not checked.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from crmsync.config.models import Config, Flow
from crmsync.connectors.base import Connector
from crmsync.connectors.capabilities import Catalog, Catalogued, PolymorphicCatalog

__all__ = ["Catalog", "Problem", "Reference", "catalog_for", "check_references", "references", "suggest"]

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
    if isinstance(catalog, PolymorphicCatalog):  # What.Amount: any object What may lead to
        parents = list(catalog.parents_of(object_name, head))
    else:
        parent = catalog.parent_of(object_name, head)  # Account.Name: a relationship, then its field
        parents = [] if parent is None else [parent]
    for related in parents:
        related_fields = catalog.field_names(related)
        if related_fields is not None and _has_field(catalog, related, rest, related_fields):
            return True
    return False


def catalog_for(connector: Connector) -> Catalog | None:
    """The catalog of a connected system (None: its connector cannot list what it holds, e.g. an app)."""
    return connector.catalog() if isinstance(connector, Catalogued) else None
