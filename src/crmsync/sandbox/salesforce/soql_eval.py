"""Runs a parsed SOQL :class:`~crmsync.sandbox.salesforce.soql_tree.Query` against a record source.

A query is compiled once per execution, in layers that each own one concern:

- :mod:`~crmsync.sandbox.salesforce.soql_resolve`: names against the source's describe (canonical
  casing, relationship hops, the polymorphic ``Name`` object, types) and reading values through
  them;
- :mod:`~crmsync.sandbox.salesforce.soql_keys`: how each field type compares, and the days a
  relative date literal stands for;
- :mod:`~crmsync.sandbox.salesforce.soql_filter`: literals checked against their fields, WHERE
  compiled to nested closures, ORDER BY to sort keys;
- this module: the SELECT list (fields, parent-to-child subqueries, TYPEOF, COUNT), LIMIT/OFFSET
  and the shape of the records Salesforce returns (``attributes`` first, parents nested).

The rows are streamed through the predicate, sorted, sliced and shaped. The names the layers
define are exported here too, as they were when they all lived in this module.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from crmsync.sandbox.salesforce.soql_filter import Predicate, RowFilter
from crmsync.sandbox.salesforce.soql_keys import (
    ID_TYPES,
    NUMBER_TYPES,
    TEXT_TYPES,
    id_key,
    relative_range,
    row_key,
)
from crmsync.sandbox.salesforce.soql_resolve import (
    MAX_RELATIONSHIP_DEPTH,
    NAME_FIELDS,
    NAME_OBJECT,
    Getter,
    Hop,
    Resolved,
    Row,
)
from crmsync.sandbox.salesforce.soql_source import ChildRelationshipSource, QueryResult, QuerySource
from crmsync.sandbox.salesforce.soql_tree import Count, FieldPath, Position, Query, TypeOf

__all__ = [
    "ID_TYPES",
    "MAX_RELATIONSHIP_DEPTH",
    "NAME_FIELDS",
    "NAME_OBJECT",
    "NUMBER_TYPES",
    "TEXT_TYPES",
    "Getter",
    "Hop",
    "Predicate",
    "Resolved",
    "Row",
    "relative_range",
    "row_key",
    "run",
]


def run(query: Query, source: QuerySource, *, now: datetime, include_deleted: bool = False) -> QueryResult:
    return _Execution(query, source, now, include_deleted).run()


class _Execution(RowFilter):
    """A whole query: the SELECT list checked and compiled (fields, subqueries, TYPEOF, COUNT),
    the matching rows sliced by LIMIT/OFFSET and shaped as Salesforce returns them."""

    # -- the whole query ---------------------------------------------------------------------
    def run(self) -> QueryResult:
        query = self.query
        counts = [item for item in query.select if isinstance(item, Count)]
        others = [item for item in query.select if not isinstance(item, Count)]
        if counts and counts[0].path is None and len(query.select) > 1:
            raise self.error("MALFORMED_QUERY", counts[0].pos, "COUNT() cannot be combined with other fields")
        if counts and others:
            first = others[0]
            if isinstance(first, FieldPath):
                pos, text = first.pos, first.text
            elif isinstance(first, TypeOf):
                pos, text = first.pos, f"TYPEOF {first.relationship.text}"
            else:
                pos, text = first.object_pos, "(SELECT)"
            raise self.error("MALFORMED_QUERY", pos, f"Field must be grouped or aggregated: {text}")
        selected = self.select(others)
        matched = self.matching_rows()
        start = query.offset or 0
        end = start + query.limit if query.limit is not None else None
        matched = matched[start:end]
        if counts:
            return self._aggregate(counts, matched)
        return QueryResult([self.shape(row, selected) for row in matched], len(matched))

    def select(self, items: list[FieldPath | Query | TypeOf]) -> list[Selected]:
        selected: list[Selected] = []
        seen: set[str] = set()
        for item in items:
            entry: Selected
            if isinstance(item, Query):
                entry = self._children(item)
                key, pos, text = entry.name.lower(), item.object_pos, item.object_name
            elif isinstance(item, TypeOf):
                entry = self._typeof(item)
                key, pos, text = entry.hop.name.lower(), item.pos, item.relationship.text
            else:
                entry = self.resolve(item)
                key, pos, text = entry.key, item.pos, item.text
            if key in seen:
                raise self.error("MALFORMED_QUERY", pos, f"duplicate field selected: {text}")
            seen.add(key)
            selected.append(entry)
        typeofs = {e.hop.name.lower(): e for e in selected if isinstance(e, _TypeOf)}
        for entry in selected:
            if isinstance(entry, Resolved) and entry.hops and entry.hops[0].name.lower() in typeofs:
                found = typeofs[entry.hops[0].name.lower()]
                raise self.error(
                    "MALFORMED_QUERY",
                    found.pos,
                    f"TYPEOF field '{found.hop.name}' cannot also be referenced in the field list",
                )
        return selected

    def _typeof(self, item: TypeOf) -> _TypeOf:
        """A TYPEOF clause: one polymorphic relationship of this object, fields per runtime type."""
        rel = item.relationship
        if len(rel.parts) != 1:
            raise self.error("MALFORMED_QUERY", rel.pos, f"TYPEOF takes a relationship of {self.object_name}")
        hop = self._hop(self.object_name, rel.parts[0], rel.pos)
        if not hop.polymorphic:
            raise self.error(
                "INVALID_FIELD",
                rel.pos,
                f"TYPEOF field '{rel.text}' is not a polymorphic relationship on entity '{self.object_name}'",
            )
        whens: dict[str, tuple[_Execution, list[Selected]]] = {}
        for when in item.whens:
            target = next((t for t in hop.targets if t.lower() == when.object_name.lower()), None)
            if target is None:
                raise self.error(
                    "INVALID_TYPE",
                    when.pos,
                    f"'{when.object_name}' is not a type of {rel.text}: it can be {', '.join(hop.targets)}",
                )
            if target.lower() in whens:
                raise self.error("MALFORMED_QUERY", when.pos, f"duplicate WHEN type: {when.object_name}")
            sub = _Execution(self.query, self.source, self.now, self.include_deleted, object_name=target)
            sub._parents = self._parents
            whens[target.lower()] = (sub, sub.select(list(when.fields)))
        other = _Execution(self.query, self.source, self.now, self.include_deleted, object_name=NAME_OBJECT)
        other._parents = self._parents
        return _TypeOf(self, hop, item.pos, whens, other, other.select(list(item.else_fields)))

    def _children(self, sub: Query) -> _Children:
        found = None
        if isinstance(self.source, ChildRelationshipSource):
            found = self.source.child_relationship(self.object_name, sub.object_name)
        if found is None:
            raise self.error(
                "INVALID_TYPE",
                sub.object_pos,
                f"Didn't understand relationship '{sub.object_name}' in FROM part of query call. If you "
                "are attempting to use a custom relationship, be sure to append the '__r' after the custom "
                "relationship name. Please reference your WSDL or the describe call for the appropriate "
                "names.",
            )
        name, child_object, ref_field = found
        execution = _Execution(sub, self.source, self.now, self.include_deleted, object_name=child_object)
        execution._parents = self._parents
        return _Children(
            name, execution, ref_field, execution.select([i for i in sub.select if not isinstance(i, Count)])
        )

    def _aggregate(self, counts: list[Count], rows: list[Row]) -> QueryResult:
        first = counts[0]
        if first.path is None:
            return QueryResult([], len(rows))
        record: dict[str, Any] = {"attributes": {"type": "AggregateResult"}}
        unnamed = 0
        for item in counts:
            assert item.path is not None
            get = self.getter(self.resolve(item.path))
            if item.alias is not None:
                name = item.alias
            else:
                name = f"expr{unnamed}"
                unnamed += 1
            record[name] = sum(1 for row in rows if get(row) is not None)
        return QueryResult([record], 1)

    # -- shaping -----------------------------------------------------------------------------
    def _attributes(self, obj: str, record_id: Any) -> dict[str, Any]:
        return {"type": obj, "url": f"{self.base}/{obj}/{record_id}"}

    def _parent_attributes(self, hop: Hop, row: Row) -> dict[str, Any]:
        if hop.polymorphic:  # the Name object, with the URL of the record it stands for
            return {"type": NAME_OBJECT, "url": f"{self.base}/{row.get('Type')}/{row.get('Id')}"}
        obj = self.object_of(str(row["Id"]), hop.target) if row.get("Id") else hop.target
        return self._attributes(obj, row.get("Id"))

    def shape(self, row: Row, selected: list[Selected]) -> dict[str, Any]:
        out: dict[str, Any] = {"attributes": self._attributes(self.object_name, row.get("Id"))}
        for item in selected:
            if isinstance(item, _Children):
                out[item.name] = item.result_for(row)
                continue
            if isinstance(item, _TypeOf):
                out[item.hop.name] = item.shape(row)
                continue
            container = out
            current: Row | None = row
            for hop in item.hops:
                ref = current.get(hop.ref_field) if current is not None else None
                current = self.follow(hop, ref) if ref is not None else None
                nested = container.get(hop.name, ...)
                if nested is ...:  # first field through this relationship: make its record
                    nested = None
                    if current is not None:
                        nested = {"attributes": self._parent_attributes(hop, current)}
                    container[hop.name] = nested
                if nested is None or current is None:
                    break
                container = nested
            else:
                container[item.field] = current.get(item.field) if current is not None else None
        return out


class _TypeOf:
    """A TYPEOF clause compiled: per WHEN type an execution on that object and its fields; the ELSE
    fields read from the ``Name`` object."""

    def __init__(
        self,
        owner: _Execution,
        hop: Hop,
        pos: Position,
        whens: dict[str, tuple[_Execution, list[Selected]]],
        other: _Execution,
        else_selected: list[Selected],
    ) -> None:
        self.owner = owner
        self.hop = hop
        self.pos = pos
        self.whens = whens
        self.other = other
        self.else_selected = else_selected

    def shape(self, row: Row) -> dict[str, Any] | None:
        ref = row.get(self.hop.ref_field)
        view = self.owner.name_row(self.hop, ref) if ref else None
        if view is None:
            return None
        obj = str(view["Type"])
        attributes = self.owner._attributes(obj, view.get("Id"))
        when = self.whens.get(obj.lower())
        if when is not None:
            execution, selected = when
            record = self.owner.parent(obj, ref)
            if record is None:
                return None
            return {**execution.shape(record, selected), "attributes": attributes}
        return {**self.other.shape(view, self.else_selected), "attributes": attributes}


class _Children:
    """A parent-to-child subquery: its rows grouped by parent once, then a page per parent record."""

    def __init__(self, name: str, execution: _Execution, ref_field: str, selected: list[Selected]):
        self.name = name
        self.execution = execution
        self.ref_field = ref_field
        self.selected = selected
        self._groups: dict[Any, list[Row]] | None = None

    def result_for(self, parent: Row) -> dict[str, Any] | None:
        if self._groups is None:
            self._groups = {}
            for row in self.execution.matching_rows():
                self._groups.setdefault(id_key(row.get(self.ref_field)), []).append(row)
        rows = self._groups.get(id_key(parent.get("Id")), [])
        query = self.execution.query
        start = query.offset or 0
        rows = rows[start : start + query.limit if query.limit is not None else None]
        if not rows:
            return None
        records = [self.execution.shape(row, self.selected) for row in rows]
        return {"totalSize": len(records), "done": True, "records": records}


Selected = Resolved | _Children | _TypeOf
