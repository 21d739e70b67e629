"""What creating a source record on the target writes: one pure function for every path.

The worker (a webhook's change), ``crmsync preview`` and ``crmsync sync`` all compute a new
record's values here, so they cannot drift apart: the same source record gives the same target
fields and the same related records, whichever path saw it.

A field the source did not send is empty, not absent: a transform that fills an empty value
(``date`` with ``default_days``) is applied whether the record came from a webhook carrying some
columns or from a full read of the board. :func:`needs_full_read` tells a path holding part of a
record that it must read the rest before creating it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from crmsync.engine.flows import FlowRuntime


@dataclass(frozen=True)
class RelatedValues:
    """A related record made with the main one: its object, fields and references to the others."""

    object_name: str
    fields: dict[str, Any]
    refs: dict[str, str]


@dataclass(frozen=True)
class Creation:
    """The target record a source record becomes, with its related records (in creation order)."""

    fields: dict[str, Any]
    related: tuple[RelatedValues, ...]


def source_fields(flow: FlowRuntime) -> frozenset[str]:
    """Every source field a rule sends to the target: the record's and its related objects'."""
    rules = [*flow.rules, *(r for rel in flow.related for r in rel.rules)]
    return frozenset(r.source for r in rules if r.to_target)


def needs_full_read(flow: FlowRuntime, record: Mapping[str, Any]) -> bool:
    """Does ``record`` lack a field the target record (or a related one) is made from?"""
    return not source_fields(flow) <= set(record)


def creation(flow: FlowRuntime, key: str, record: Mapping[str, Any]) -> Creation:
    """The values creating ``record`` writes; a field ``record`` does not hold is taken as empty."""
    whole = {name: None for name in source_fields(flow) if name != flow.key_field} | dict(record)
    return Creation(
        fields=flow.to_target(key, whole, owned=False),
        related=tuple(
            RelatedValues(rel.object_name, flow.to_target(key, whole, rel.rules, owned=False), dict(rel.refs))
            for rel in flow.related
        ),
    )
