"""Names in a SOQL query resolved against the record source, and values read through them.

:class:`FieldResolver` is the part of an execution that knows the schema: the queried object's
canonical name, each field path (``Account.Owner.Name``) as relationship hops (:class:`Hop`) and
a field with its describe type (:class:`Resolved`), and a getter that follows those hops from a
row to the value, fetching each parent once. A polymorphic relationship (``Task.What``) resolves
to the ``Name`` object, a small view of whichever record the reference points at. Unknown
objects, fields and relationships fail here, with Salesforce's INVALID_TYPE and INVALID_FIELD
messages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from crmsync.sandbox.salesforce.soql_errors import SoqlError, located_error
from crmsync.sandbox.salesforce.soql_source import (
    DescribedQuerySource,
    PolymorphicSource,
    QuerySource,
    RecordTypeSource,
)
from crmsync.sandbox.salesforce.soql_tree import FieldPath, Position, Query

Row = Mapping[str, Any]
Getter = Callable[[Row], Any]

MAX_RELATIONSHIP_DEPTH = 5

#: the ``Name`` object a polymorphic relationship (``What``, ``Who``, ``Owner``) resolves to, and its
#: fields; ``Type`` is the related record's object
NAME_OBJECT = "Name"
NAME_FIELDS = {
    "Id": "id",
    "Name": "string",
    "Type": "picklist",
    "Alias": "string",
    "Email": "email",
    "FirstName": "string",
    "LastName": "string",
    "Phone": "phone",
    "Title": "string",
    "IsActive": "boolean",
}
#: objects whose name field is not ``Name``
_NAME_FIELD = {"Contract": "ContractNumber", "Case": "CaseNumber"}


@dataclass(frozen=True)
class Hop:
    """One step up a relationship: ``AccountId`` on the current object leads to an ``Account``."""

    ref_field: str
    name: str  # the relationship name as Salesforce spells it in results: "Account", "Contract__r"
    target: str  # NAME_OBJECT for a polymorphic relationship
    #: the objects a polymorphic relationship may point at (empty for an ordinary one)
    targets: tuple[str, ...] = ()

    @property
    def polymorphic(self) -> bool:
        return bool(self.targets)


@dataclass(frozen=True)
class Resolved:
    hops: tuple[Hop, ...]
    field: str
    type: str

    @property
    def key(self) -> str:
        return ".".join([*(h.name for h in self.hops), self.field]).lower()


class FieldResolver:
    """One query (or subquery) on one object: its names resolved against the source's describe,
    and the values read through relationship hops (parents fetched once per execution, shared
    with its subqueries through ``_parents``)."""

    def __init__(
        self,
        query: Query,
        source: QuerySource,
        now: datetime,
        include_deleted: bool,
        *,
        object_name: str | None = None,
    ) -> None:
        self.query = query
        self.source = source
        self.now = now
        self.today = (now if now.tzinfo is not None else now.replace(tzinfo=UTC)).astimezone(UTC).date()
        self.include_deleted = include_deleted
        self.base = f"/services/data/v{source.api_version}/sobjects"
        self._field_maps: dict[str, dict[str, str]] = {}
        self._parents: dict[tuple[str, str], Row | None] = {}
        self.object_name = object_name or self._object(query.object_name, query.object_pos)

    # -- errors and names ------------------------------------------------------------------
    def error(self, code: str, pos: Position, detail: str) -> SoqlError:
        return located_error(code, self.query.text, pos.line, pos.column, detail)

    def _object(self, name: str, pos: Position) -> str:
        canonical = name
        if isinstance(self.source, DescribedQuerySource):
            names = {n.lower(): n for n in self.source.object_names()}
            canonical = names.get(name.lower(), name)
        if self.source.object_exists(canonical):
            return canonical
        if canonical != name and self.source.object_exists(name):
            return name
        raise self.error(
            "INVALID_TYPE",
            pos,
            f"sObject type '{name}' is not supported. If you are attempting to use a custom object, be "
            "sure to append the '__c' after the entity name. Please reference your WSDL or the describe "
            "call for the appropriate names.",
        )

    def _field_map(self, obj: str) -> dict[str, str]:
        names = self._field_maps.get(obj)
        if names is None:
            if isinstance(self.source, DescribedQuerySource):
                found: Iterable[str] = self.source.field_names(obj)
            else:
                first = next(iter(self.source.rows(obj, True)), None)
                found = first.keys() if first is not None else ()
            names = self._field_maps[obj] = {n.lower(): n for n in found}
        return names

    def _field(self, obj: str, name: str) -> tuple[str, str] | None:
        """(canonical name, describe type) of field ``name`` on ``obj``, any casing."""
        if obj == NAME_OBJECT:
            return next(((n, t) for n, t in NAME_FIELDS.items() if n.lower() == name.lower()), None)
        canonical = self._field_map(obj).get(name.lower(), name)
        for candidate in dict.fromkeys((canonical, name)):
            field_type = self.source.field_type(obj, candidate)
            if field_type is not None:
                return candidate, field_type
        return None

    def _hop(self, obj: str, name: str, pos: Position) -> Hop:
        hop = self._plain_hop(obj, name, pos)
        if isinstance(self.source, PolymorphicSource):
            targets = self.source.polymorphic_targets(obj, hop.ref_field)
            if targets:
                return Hop(hop.ref_field, hop.name, NAME_OBJECT, tuple(targets))
        return hop

    def _plain_hop(self, obj: str, name: str, pos: Position) -> Hop:
        lower = name.lower()
        ref_name = name[:-3] + "__c" if lower.endswith("__r") else name + "Id"
        ref = self._field(obj, ref_name)
        if ref is not None and ref[1] == "reference":
            ref_field = ref[0]
            rel_name = ref_field[:-3] + "__r" if ref_field.lower().endswith("__c") else ref_field[:-2]
            for candidate in dict.fromkeys((rel_name, name)):
                found = self.source.relationship(obj, candidate)
                if found is not None:
                    return Hop(found[0], rel_name, found[1])
        found = self.source.relationship(obj, name) if obj != NAME_OBJECT else None
        if found is not None:
            return Hop(found[0], name, found[1])
        raise self.error(
            "INVALID_FIELD",
            pos,
            f"Didn't understand relationship '{name}' in field path. If you are attempting to use a "
            "custom relationship, be sure to append the '__r' after the custom relationship name. Please "
            "reference your WSDL or the describe call for the appropriate names.",
        )

    def resolve(self, path: FieldPath) -> Resolved:
        parts = path.parts
        own_name = len(parts) > 1 and parts[0].lower() == self.object_name.lower()
        if own_name and self.source.relationship(self.object_name, parts[0]) is None:
            parts = parts[1:]  # "Account.Name" FROM Account: the object's own name may qualify its fields
        if len(parts) - 1 > MAX_RELATIONSHIP_DEPTH:
            raise self.error(
                "MALFORMED_QUERY",
                path.pos,
                f"SOQL statements cannot query relationships more than {MAX_RELATIONSHIP_DEPTH} levels away",
            )
        obj = self.object_name
        hops: list[Hop] = []
        for name in parts[:-1]:
            hop = self._hop(obj, name, path.pos)
            hops.append(hop)
            obj = hop.target
        found = self._field(obj, parts[-1])
        if found is None:
            raise self.error(
                "INVALID_FIELD",
                path.pos,
                f"No such column '{parts[-1]}' on entity '{obj}'. If you are attempting to use a custom "
                "field, be sure to append the '__c' after the custom field name. Please reference your "
                "WSDL or the describe call for the appropriate names.",
            )
        return Resolved(tuple(hops), found[0], found[1])

    # -- reading values ----------------------------------------------------------------------
    def parent(self, obj: str, record_id: Any) -> Row | None:
        key = (obj, str(record_id))
        try:
            return self._parents[key]
        except KeyError:
            row = self._parents[key] = self.source.get(obj, str(record_id))
            return row

    def object_of(self, record_id: str, default: str) -> str:
        if isinstance(self.source, RecordTypeSource):
            return self.source.object_of(record_id) or default
        return default

    def name_row(self, hop: Hop, record_id: Any) -> Row | None:
        """The ``Name`` object for the record a polymorphic reference points at."""
        key = (NAME_OBJECT, str(record_id))
        if key in self._parents:
            return self._parents[key]
        rec = self.source.get(hop.targets[0], str(record_id))
        view: dict[str, Any] | None = None
        if rec is not None:
            obj = self.object_of(str(rec.get("Id") or record_id), hop.targets[0])
            view = {n: rec.get(n) for n in NAME_FIELDS}
            view["Name"] = rec.get(_NAME_FIELD.get(obj, "Name"))
            view["Type"] = obj
        self._parents[key] = view
        return view

    def follow(self, hop: Hop, ref: Any) -> Row | None:
        """The parent row (or ``Name`` view) a reference value leads to."""
        return self.name_row(hop, ref) if hop.polymorphic else self.parent(hop.target, ref)

    def getter(self, resolved: Resolved) -> Getter:
        name = resolved.field
        if not resolved.hops:
            return lambda row: row.get(name)
        hops = resolved.hops
        follow = self.follow

        def get(row: Row) -> Any:
            current: Row | None = row
            for hop in hops:
                ref = current.get(hop.ref_field) if current is not None else None
                if ref is None:
                    return None
                current = follow(hop, ref)
            return current.get(name) if current is not None else None

        return get
