"""A flow at run time: which fields a source may send, and how they become the target's fields.

Built once from the flow's configuration (:class:`crmsync.config.models.Flow`); the ingest API
uses :meth:`FlowRuntime.refuse_fields` to turn away what the source does not own, and the worker
uses :meth:`FlowRuntime.to_target` to map the net fields of a change through the transforms.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from crmsync.engine import transforms
from crmsync.errors import CrmsyncError, FixTheData


@dataclass(frozen=True)
class FieldRule:
    source: str
    target: str
    transform: str | None
    args: Mapping[str, Any]
    owned_by_source: bool
    to_target: bool


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
        self.rules: list[FieldRule] = [
            FieldRule(
                source=m.source,
                target=m.target,
                transform=m.transform,
                args=dict(m.args or {}),
                owned_by_source=m.owner == "source",
                to_target=m.direction in ("to_target", "both"),
            )
            for m in flow.fields
        ]
        self._writable = {r.source for r in self.rules if r.owned_by_source and r.to_target}
        self._owned_elsewhere = {r.source for r in self.rules if not r.owned_by_source}
        # resolve transforms now: an unknown name is a configuration error, found at start
        self._functions = {r.transform: transforms.get(r.transform) for r in self.rules if r.transform}

    @property
    def writable_fields(self) -> frozenset[str]:
        return frozenset(self._writable)

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

    def to_target(self, record_key: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """The target's fields for the source's ``fields`` (the key is always included)."""
        record = {self.key_field: record_key, **fields}
        out: dict[str, Any] = {}
        for rule in self.rules:
            if not (rule.owned_by_source and rule.to_target) or rule.source not in record:
                continue
            value = record[rule.source]
            if rule.transform:
                try:
                    value = self._functions[rule.transform](value, rule.args, record)
                except CrmsyncError:
                    raise
                except (TypeError, ValueError) as exc:
                    raise FixTheData(
                        f"field {rule.source!r}: transform {rule.transform!r} failed: {exc}",
                        object_name=self.object_name,
                        record=record_key,
                    ) from exc
            out[rule.target] = value
        return out

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
