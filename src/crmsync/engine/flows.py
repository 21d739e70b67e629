"""A flow at run time: which fields a source may send, and how they become the target's fields.

Built once from the flow's configuration (:class:`crmsync.config.models.Flow`); the ingest API
uses :meth:`FlowRuntime.refuse_fields` to turn away what the source does not own, and the worker
uses :meth:`FlowRuntime.to_target` to map the net fields of a change through the transforms.
:func:`target_shapes` tells a target whose storage follows its flows
(:class:`~crmsync.connectors.capabilities.PreparesSchema`) what they write into it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from crmsync.connectors.base import EventMeta, Write
from crmsync.connectors.capabilities import TargetShape
from crmsync.engine import transforms
from crmsync.errors import CrmsyncError, FixTheData

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FieldRule:
    source: str
    target: str
    transform: str | None
    args: Mapping[str, Any]
    owned_by_source: bool
    to_target: bool
    to_source: bool = False
    reverse_transform: str | None = None
    reverse_args: Mapping[str, Any] = field(default_factory=dict)


def _rules(mappings: Any) -> list[FieldRule]:
    return [
        FieldRule(
            source=m.source,
            target=m.target,
            transform=m.transform,
            args=dict(m.args or {}),
            owned_by_source=m.owner == "source",
            to_target=m.direction in ("to_target", "both"),
            to_source=m.direction in ("to_source", "both"),
            reverse_transform=m.reverse_transform,
            reverse_args=dict(m.reverse_args or {}),
        )
        for m in mappings
    ]


@dataclass(frozen=True)
class Related:
    """An object created with the record in one all-or-none call (e.g. a lead's Account)."""

    object_name: str
    rules: list[FieldRule]
    refs: Mapping[str, str]
    write_back: str | None


class FlowRuntime:
    def __init__(self, name: str, flow: Any) -> None:
        self.name = name
        self.flow = flow
        self.source: str = flow.source
        self.target: str = flow.target
        self.object_name: str = flow.object
        self.key_field: str = flow.key
        self.match_field: str | None = flow.match.field if flow.match is not None else None
        self.on_delete: str = flow.on_delete
        self.lock = flow.lock
        self.urgent: bool = flow.urgent
        self.source_object: str | None = flow.source_object
        self.when = flow.when
        self.write_back: str | None = flow.write_back
        self.conflict_policy: str = flow.conflict.policy
        self.rules: list[FieldRule] = _rules(flow.fields)
        self.related = [Related(r.object, _rules(r.fields), dict(r.refs), r.write_back) for r in flow.related]
        self._writable = {r.source for r in self.rules if r.owned_by_source and r.to_target}
        self._owned_elsewhere = {r.source for r in self.rules if not r.owned_by_source}
        # resolve transforms now: an unknown name is a configuration error, found at start
        every = [*self.rules, *(r for rel in self.related for r in rel.rules)]
        names = {r.transform for r in every if r.transform} | {
            r.reverse_transform for r in every if r.reverse_transform
        }
        self._functions = {name: transforms.get(name) for name in names if name}

    def source_fields(self) -> list[str]:
        """The source fields a read of whole records needs (a migration, a preview, a sync), each
        once: the key, every mapped source field (related objects' too), the ``when`` field and the
        match field's source. Relationship paths stay as written (``What.Amount``): the connector
        reads them as its own query language allows."""
        every = [*self.rules, *(r for rel in self.related for r in rel.rules)]
        wanted = [self.key_field, *(r.source for r in every)]
        if self.when is not None:
            wanted.append(self.when.field)
        if self.flow.match is not None and self.flow.match.source:
            wanted.append(self.flow.match.source)
        return list(dict.fromkeys(wanted))

    def refuse_fields(self, fields: Mapping[str, Any]) -> list[str]:
        """Why the source may not send ``fields`` (empty when it may)."""
        problems = []
        for name in fields:
            if name in self._owned_elsewhere:
                problems.append(
                    f"field {name!r} is owned by {self.target!r}; {self.source!r} may not write it"
                )
            elif name not in self._writable:
                valid = ", ".join(sorted(self._writable))
                problems.append(f"unknown field {name!r} for flow {self.name!r}; valid: {valid}")
        return problems

    def to_target(
        self,
        record_key: str,
        fields: Mapping[str, Any],
        rules: list[FieldRule] | None = None,
        *,
        owned: bool = True,
    ) -> dict[str, Any]:
        """The target's fields for the source's ``fields`` (the key is always included).

        ``owned``: only fields the source owns (the ingest API's rule); two-way flows map every
        field that travels to the target and settle ownership as a conflict policy.
        """
        record = {self.key_field: record_key, **fields}
        out: dict[str, Any] = {}
        for rule in self.rules if rules is None else rules:
            if not rule.to_target or (owned and not rule.owned_by_source) or rule.source not in record:
                continue
            out[rule.target] = self._apply(
                rule.transform, rule.args, record[rule.source], record, rule.source, record_key
            )
        return out

    def event_values(
        self, record_key: str, meta: EventMeta | None, *, owned: bool = True
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """What the event behind a change says it set and what those fields held before it
        (:attr:`~crmsync.connectors.base.EventMeta.changed` / ``previous``), mapped by the same
        rules as the change's fields (:meth:`to_target`), in the target's names: ``(changed,
        previous)`` (a creation's ``previous`` is empty). None when the event does not say, or its
        values cannot be mapped alone (a transform needing other fields of the record): its target
        then does as for a change without them."""
        if meta is None or meta.changed is None or meta.previous is None:
            return None
        try:
            return self._mapped_alone(record_key, meta.changed, owned), self._mapped_alone(
                record_key, meta.previous, owned
            )
        except Exception:  # a value of the history alone must never fail the change: not told
            log.info(
                "flow %s, record %s: the event's own values cannot be mapped alone", self.name, record_key
            )
            return None

    def with_event_values(self, write: Write, *, owned: bool = True) -> Write:
        """``write`` with what its event says it set and replaced (:meth:`event_values`, keyed by
        the write's key: the change's record key), for a target that keeps a history."""
        told = self.event_values(write.key, write.meta, owned=owned)
        return write if told is None else replace(write, changed=told[0], previous=told[1])

    def _mapped_alone(self, record_key: str, values: Mapping[str, Any], owned: bool) -> dict[str, Any]:
        """``values`` mapped by the rules of the fields they name (not the record's key)."""
        rules = [r for r in self.rules if r.source in values]
        return self.to_target(record_key, values, rules, owned=owned) if rules else {}

    def to_source(self, record_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """The source's fields for the target's ``fields`` (two-way fields only)."""
        out: dict[str, Any] = {}
        for rule in self.rules:
            if not rule.to_source or rule.target not in fields:
                continue
            value = fields[rule.target]
            if rule.reverse_transform:
                value = self._apply(
                    rule.reverse_transform, rule.reverse_args, value, fields, rule.target, record_id
                )
            elif rule.transform == "value_map":
                inverted = {v: k for k, v in dict(rule.args.get("map", {})).items()}
                value = inverted.get(value, value)
            out[rule.source] = value
        return out

    def matches_when(self, record: Mapping[str, Any]) -> bool:
        if self.when is None:
            return True
        value = record.get(self.when.field)
        starts_with = getattr(self.when, "starts_with", None)
        if starts_with is not None:
            return isinstance(value, str) and value.startswith(starts_with)
        if self.when.one_of is not None:
            return value in self.when.one_of
        return bool(value == self.when.equals)

    def _apply(
        self,
        name: str | None,
        args: Mapping[str, Any],
        value: Any,
        record: Mapping[str, Any],
        field_name: str,
        key: str,
    ) -> Any:
        if not name:
            return value
        try:
            return self._functions[name](value, args, record)
        except FixTheData as exc:  # name the field: the transform knows only the value
            raise FixTheData(
                f"field {field_name!r}: {exc.message}", object_name=self.object_name, record=key
            ) from exc
        except CrmsyncError:
            raise
        except (TypeError, ValueError) as exc:
            raise FixTheData(
                f"field {field_name!r}: transform {name!r} failed: {exc}",
                object_name=self.object_name,
                record=key,
            ) from exc

    def lock_parent(self, fields: Mapping[str, Any]) -> str | None:
        """The parent record id the lock rule looks at, from the source's fields."""
        if self.lock is None:
            return None
        value = fields.get(self.lock.key)
        return None if value in (None, "") else str(value)

    def lock_message(self, fields: Mapping[str, Any]) -> str:
        assert self.lock is not None
        template: str = self.lock.message or "record is locked by its parent {parent}"
        values = {**dict(fields.items()), "parent": self.lock_parent(fields)}
        try:
            return template.format(**values)
        except (KeyError, IndexError, ValueError):
            return template


def target_shapes(
    flows: Iterable[FlowRuntime],
    target: str,
    describe: Callable[[str, str], Mapping[str, Any] | None],
) -> list[TargetShape]:
    """What the flows writing to ``target`` write into it: per flow, its object and the target fields
    it maps to (each from its source field, typed by ``describe(source connection, source object)``;
    None when the source cannot say)."""
    shapes = []
    for flow in flows:
        if flow.target != target:
            continue
        fields = {r.target: r.source for r in flow.rules if r.to_target}
        source_object = flow.source_object or flow.object_name
        shapes.append(
            TargetShape(
                flow=flow.name,
                object_name=flow.object_name,
                fields=fields,
                source=flow.source,
                describe=describe(flow.source, source_object),
            )
        )
    return shapes
