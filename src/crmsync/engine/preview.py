"""What a sync of one flow would change, found by reading only.

- A **two-way flow** (a Monday.com board → Salesforce): every item of the board is mapped through
  the flow and compared with its linked Salesforce records (the links table, then one read per
  object). An item that matches the flow's ``when`` and has no link yet would be *created*, with
  its related objects; a linked one whose mapped fields differ would be *updated* (field: current
  → new); the others are *unchanged*, or *skipped* when they do not match ``when``. Where the
  shadow shows that only Salesforce changed a two-way field since the last sync, the value would
  travel the other way: the field is listed with the direction ``to_source``.
- An **application flow**: the changes still queued for the flow (pending or leased), folded per
  record as a worker folds them and mapped through the flow: what the workers would write next,
  records refused by the lock rule and changes that would become dead letters included.

Nothing is written: no connector write, no row in the store. Connectors are built here without the
store, so even monday's complexity book is kept in memory (the pacer still follows what monday
reports of the budget in every reply).

::

    source records ──► when? ──► map (FlowRuntime.to_target) ──► compare with the linked target
    (or queued changes)                                           records ──► RecordPreview
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

from crmsync.connectors import registry
from crmsync.connectors.base import Connector, Record
from crmsync.connectors.capabilities import Exports, NamedObjects, Queryable, Readable, require
from crmsync.connectors.stamps import try_stamp
from crmsync.engine.decide import STAMPS, decide, news, settle
from crmsync.engine.flows import FlowRuntime
from crmsync.engine.queue import UNFINISHED, fold
from crmsync.errors import ConfigError, CrmsyncError, FixTheData
from crmsync.store import schema as t
from crmsync.store import shadow

if TYPE_CHECKING:
    from crmsync.engine.runtime import Runtime

Action = Literal["create", "update", "upsert", "delete", "unchanged", "skipped", "locked", "refused"]
Direction = Literal["to_target", "to_source"]
#: the actions that would write something
WRITES: frozenset[str] = frozenset({"create", "update", "upsert", "delete"})


@dataclass(frozen=True)
class FieldChange:
    """One field a sync would write: on the target (``to_target``) or back on the source."""

    field: str
    current: Any
    new: Any
    direction: Direction = "to_target"


@dataclass(frozen=True)
class RelatedPreview:
    """An object created or updated with the record (e.g. a lead's Account)."""

    object_name: str
    action: Action
    target_id: str | None
    fields: tuple[FieldChange, ...] = ()


@dataclass(frozen=True)
class RecordPreview:
    """What a sync would do to one source record."""

    record: str
    action: Action
    object_name: str
    label: str | None = None
    target_id: str | None = None
    fields: tuple[FieldChange, ...] = ()
    related: tuple[RelatedPreview, ...] = ()
    reason: str | None = None


@dataclass(frozen=True)
class FlowPreview:
    flow: str
    kind: Literal["two_way", "application"]
    source: str
    target: str
    object_name: str
    records: list[RecordPreview] = field(default_factory=list)
    limited: bool = False

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for record in self.records:
            counts[record.action] += 1
        return dict(counts)

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["counts"] = self.counts()
        return out


# -- comparison (pure) ------------------------------------------------------------------------------------
def compare_two_way(
    flow: FlowRuntime,
    key: str,
    source: Mapping[str, Any],
    *,
    target_id: str | None,
    current: Mapping[str, Any] | None,
    related: Mapping[str, tuple[str, Mapping[str, Any] | None]] | None = None,
    source_shadow: Mapping[str, Any] | None = None,
    target_shadow: Mapping[str, Any] | None = None,
    label: str | None = None,
    at: datetime | None = None,
    target_at: datetime | None = None,
    pending_target: Sequence[tuple[Mapping[str, Any], datetime]] = (),
    matched: bool = False,
) -> RecordPreview:
    """What the worker does with the source record ``source`` (changed at ``at``), decided as it
    decides (:mod:`crmsync.engine.decide`): nothing here compares on its own.

    ``target_id``/``current``: the linked target record and its fields (``current`` None: the link
    points at a record the target no longer has), or with ``matched`` the unlinked record's
    counterpart found by the flow's match field (the worker adopts it: an update). ``related``: per
    related object, its linked id and fields. The shadows (``[value, at]`` per field, as last synced)
    tell what each side changed since (strictly: a value that differs is news); ``target_at``: when
    the target record last changed; ``pending_target``: the target's changes of this record still
    queued (payload, queued at). A field both sides changed is settled by the flow's policy; a
    two-way field changed only on the target (its shadow known) travels back to the source.
    """
    obj = flow.object_name
    when = at or datetime.now(UTC)
    known = dict(source_shadow or {})
    if target_id is None or matched:
        record = {k: v[0] for k, v in known.items() if isinstance(v, list | tuple) and v} | dict(source)
        decision = decide(flow, key, record, linked=False)  # what the worker decides (one function)
        if decision.creation is None:
            return RecordPreview(key, "skipped", obj, label, reason=decision.reason)
        plan = decision.creation
        made = tuple(
            RelatedPreview(
                r.object_name, "create", None, tuple(FieldChange(f, None, v) for f, v in r.fields.items())
            )
            for r in plan.related
        )
        if matched and target_id is not None:  # adopted: updated with the values a create would write
            fields = tuple(FieldChange(f, (current or {}).get(f), v) for f, v in plan.fields.items())
            adopted = f"matched {obj} {target_id} by {flow.match_field}"
            return RecordPreview(key, "update", obj, label, target_id, fields, made, reason=adopted)
        new = tuple(FieldChange(f, None, v) for f, v in plan.fields.items())
        return RecordPreview(key, "create", obj, label, fields=new, related=made)
    if current is None:
        gone = f"linked {obj} {target_id} is not in {flow.target} any more: a sync would fail"
        return RecordPreview(key, "refused", obj, label, target_id=target_id, reason=gone)
    shadow_t = dict(target_shadow or {})
    back = _travels_back(flow, current, shadow_t, target_at or when)
    # the change back, queued with the source's, meets it as a conflict where both changed a field
    pending = [*pending_target, *([(back, target_at or when)] if back else [])]
    changed = news(known, {k: v for k, v in source.items() if k not in STAMPS}, when).fields
    settled = settle(flow, "source", changed, when, pending, shadow_t)
    back = {f: v for f, v in back.items() if f not in settled.lost}
    decision = decide(flow, key, source, linked=True, news=settled.kept)
    targets = {r.target for r in flow.rules if r.to_target}
    main = {f: v for f, v in decision.fields.items() if f in targets}
    changes = [FieldChange(f, current.get(f), v) for f, v in main.items()]  # every field it writes
    for rule in flow.rules:
        if rule.to_source and rule.target in back:
            value = flow.to_source(target_id, {rule.target: back[rule.target]}).get(rule.source)
            changes.append(FieldChange(rule.source, source.get(rule.source), value, "to_source"))
    record = {k: v[0] for k, v in known.items() if isinstance(v, list | tuple) and v} | dict(source)
    rel_out: list[RelatedPreview] = []
    for rel in flow.related:
        if rel.object_name not in (related or {}):
            continue  # the worker writes only linked related records
        rel_id, rel_current = (related or {})[rel.object_name]
        written = {r.target for r in rel.rules if r.source in settled.kept}
        rel_fields = {
            f: v
            for f, v in flow.to_target(
                key, {k: record[k] for k in settled.kept if k in record}, rel.rules, owned=False
            ).items()
            if f in written
        }
        if rel_current is None:
            rel_out.append(RelatedPreview(rel.object_name, "refused" if rel_fields else "unchanged", rel_id))
            continue
        diff = tuple(FieldChange(f, rel_current.get(f), v) for f, v in rel_fields.items())
        rel_out.append(RelatedPreview(rel.object_name, "update" if rel_fields else "unchanged", rel_id, diff))
    writes = bool(main) or bool(back) or any(r.action in ("update", "refused") for r in rel_out)
    reason: str | None = None
    if settled.conflicts:
        reason = "; ".join(c.message for c in settled.conflicts)
    elif not writes:
        reason = decision.reason or "nothing to write"
    return RecordPreview(
        key,
        "update" if writes else "unchanged",
        obj,
        label,
        target_id=target_id,
        fields=tuple(changes),
        related=tuple(rel_out),
        reason=reason,
    )


def _travels_back(
    flow: FlowRuntime, current: Mapping[str, Any], target_shadow: Mapping[str, Any], at: datetime
) -> dict[str, Any]:
    """The two-way fields the target changed since the last sync (its shadow known, its value news)."""
    fields = {
        r.target: current.get(r.target) for r in flow.rules if r.to_source and r.target in target_shadow
    }
    return news(target_shadow, fields, at).fields


# -- reading ------------------------------------------------------------------------------------------
class Preview:
    """Reads what a sync of a flow would read and reports what it would write; writes nothing.

    ``connector``: how a connection's connector is built (default: from the configuration, not
    attached to the store). Connectors built here are closed by :meth:`close`.
    """

    def __init__(self, runtime: Runtime, *, connector: Callable[[str], Connector] | None = None) -> None:
        self.rt = runtime
        self._make = connector or self._from_config
        self._connectors: dict[str, Connector] = {}

    def _from_config(self, name: str) -> Connector:
        conn = self.rt.config.connections.get(name)
        if conn is None:
            valid = ", ".join(sorted(self.rt.config.connections))
            raise ConfigError(f"unknown connection {name!r}; valid: {valid}")
        return registry.create(name, conn)

    def connector(self, name: str) -> Connector:
        if name not in self._connectors:
            self._connectors[name] = self._make(name)
        return self._connectors[name]

    def close(self) -> None:
        for connector in self._connectors.values():
            connector.close()
        self._connectors.clear()

    def flow(self, name: str) -> FlowRuntime:
        found = self.rt.flows.get(name)
        if found is None:
            valid = ", ".join(sorted(self.rt.flows)) or "(none)"
            raise ConfigError(f"unknown flow {name!r}; valid: {valid}")
        return found

    def run(self, name: str, *, limit: int | None = None) -> FlowPreview:
        flow = self.flow(name)
        if self.rt.is_app_source(flow):
            return self.application(flow, limit=limit)
        return self.two_way(flow, limit=limit)

    # -- two-way ----------------------------------------------------------------------------------------
    def _board(self, flow: FlowRuntime) -> str:
        name = flow.source_object
        if name is None:
            raise ConfigError(f"flow {flow.name!r} names no source_object (the board to read)")
        source = self.connector(flow.source)
        if not isinstance(source, NamedObjects):
            return name
        return source.object_id(name)

    def two_way(self, flow: FlowRuntime, *, limit: int | None = None) -> FlowPreview:
        board, limited = self.board_records(flow, limit=limit)
        return self.compare(flow, board, limited=limited)

    def board_records(self, flow: FlowRuntime, *, limit: int | None = None) -> tuple[list[Record], bool]:
        """The items of the flow's board (at most ``limit``), and whether there were more."""
        records: list[Record] = []
        for record in self._source_records(flow, limit):
            if limit is not None and len(records) >= limit:
                return records, True
            records.append(record)
        return records, False

    def _source_records(self, flow: FlowRuntime, limit: int | None) -> Iterator[Record]:
        """The source object read whole. A source that exports (Salesforce) reads the flow's fields
        as a migration does (:meth:`FlowRuntime.source_fields`), so fields through a relationship
        (``What.Amount``: a TYPEOF) carry what the polling path reads; any other scans its records.
        A limited preview reads ``limit`` + 1 records at most: told so, the export reads them page
        by page rather than counting the object and exporting all of it."""
        source = self.connector(flow.source)
        board = self._board(flow)
        if isinstance(source, Exports):
            count = None if limit is None else limit + 1
            return source.export(board, flow.source_fields(), order_by=flow.key_field, count=count)
        return require(source, Readable, f"the preview of flow {flow.name!r}").scan(board)

    def compare(self, flow: FlowRuntime, records: Sequence[Record], *, limited: bool = False) -> FlowPreview:
        """What the worker would do with each of these source records (a change of the whole record,
        stamped with when it was modified), against its linked or matching target records."""
        keys = [r.id for r in records]
        main_links = self._links(flow.name, flow.source, keys)
        rel_links = {
            r.object_name: self._links(f"{flow.name}:{r.object_name}", flow.source, keys)
            for r in flow.related
        }
        source_shadows = shadow.get_shadows(self.rt.store, flow.source, f"{flow.name}:source", keys)
        matches = self._matches(flow, [r for r in records if r.id not in main_links], source_shadows)
        current = self._read_target(
            flow.target,
            flow.object_name,
            [*main_links.values(), *(m for m in matches.values() if isinstance(m, str))],
        )
        rel_current = {
            obj: self._read_target(flow.target, obj, list(ids.values())) for obj, ids in rel_links.items()
        }
        target_shadows = shadow.get_shadows(
            self.rt.store, flow.target, f"{flow.name}:target", list(main_links.values())
        )
        pending = self._pending(flow, list(main_links.values()))
        out = []
        for item in records:
            key, fields = item.id, dict(item.fields)
            target_id = main_links.get(key)
            try:
                found = matches.get(key) if target_id is None else None
                if isinstance(found, FixTheData):
                    raise found
                linked = target_id or found
                record = current.get(linked) if linked else None
                related: dict[str, tuple[str, Mapping[str, Any] | None]] = {}
                for obj, ids in rel_links.items():
                    if key in ids:
                        rel_record = rel_current[obj].get(ids[key])
                        related[obj] = (ids[key], rel_record.fields if rel_record is not None else None)
                preview = compare_two_way(
                    flow,
                    key,
                    fields,
                    target_id=linked,
                    current=record.fields if record is not None else None,
                    related=related,
                    source_shadow=source_shadows.get(key),
                    target_shadow=target_shadows.get(target_id) if target_id else None,
                    label=_label(fields),
                    at=try_stamp(item.modified),
                    target_at=try_stamp(record.modified) if record is not None else None,
                    pending_target=pending.get(target_id, []) if target_id else [],
                    matched=found is not None,
                )
            except FixTheData as exc:
                preview = RecordPreview(
                    key, "refused", flow.object_name, _label(fields), target_id, reason=str(exc)
                )
            out.append(preview)
        return FlowPreview(flow.name, "two_way", flow.source, flow.target, flow.object_name, out, limited)

    def _matches(
        self, flow: FlowRuntime, unlinked: Sequence[Record], shadows: Mapping[str, Any]
    ) -> dict[str, str | FixTheData | None]:
        """The match step of the worker's create: per unlinked record the worker would create, the
        target record holding its match value (one lookup for all), or why it would be refused."""
        match = flow.flow.match
        if match is None or match.source is None:
            return {}
        values: dict[str, str] = {}
        for r in unlinked:
            known = {
                k: v[0] for k, v in (shadows.get(r.id) or {}).items() if isinstance(v, list | tuple) and v
            }
            record = known | dict(r.fields)
            if record.get(match.source) not in (None, "") and flow.matches_when(record):
                values[r.id] = str(record[match.source])
        if not values:
            return {}
        target = require(self.connector(flow.target), Queryable, f"flow {flow.name!r} (match)")
        found = target.find_by_field(flow.object_name, match.field, sorted(set(values.values())))
        out: dict[str, str | FixTheData | None] = {}
        for key, value in values.items():
            ids = found.get(value, [])
            if len(ids) > 1:
                out[key] = FixTheData(
                    f"several {flow.object_name} records have {match.field} = {value!r}: "
                    "crmsync will not guess which one is this record",
                    object_name=flow.object_name,
                )
            else:
                out[key] = ids[0] if ids else None
        return out

    def _pending(
        self, flow: FlowRuntime, target_ids: Sequence[str]
    ) -> dict[str, list[tuple[dict[str, Any], datetime]]]:
        """The target's changes of these records still queued (what a conflict is settled against)."""
        c = t.changes.c
        found: dict[str, list[tuple[dict[str, Any], datetime]]] = {}
        with self.rt.store.read() as conn:
            for start in range(0, len(target_ids), 500):
                rows = conn.execute(
                    sa.select(c.record_key, c.payload, c.created_at).where(
                        c.flow == flow.name,
                        c.source == flow.target,
                        c.record_key.in_(target_ids[start : start + 500]),
                        c.state.in_(("pending", "leased")),
                    )
                )
                for row in rows:
                    found.setdefault(str(row.record_key), []).append(
                        (dict(row.payload or {}), row.created_at)
                    )
        return found

    def _links(self, flow: str, source_system: str, keys: Sequence[str]) -> dict[str, str]:
        c = t.links.c
        found: dict[str, str] = {}
        with self.rt.store.read() as conn:
            for start in range(0, len(keys), 500):
                rows = conn.execute(
                    sa.select(c.source_key, c.target_id).where(
                        c.flow == flow,
                        c.source_system == source_system,
                        c.source_key.in_(keys[start : start + 500]),
                    )
                )
                found.update({str(r.source_key): str(r.target_id) for r in rows})
        return found

    def _read_target(self, connection: str, object_name: str, ids: Sequence[str]) -> dict[str, Record]:
        """The target's records by id; an id is under both its 15- and 18-character forms."""
        if not ids:
            return {}
        found: dict[str, Record] = {}
        target = require(self.connector(connection), Readable, f"a preview reading {object_name}")
        for record in target.read_records(object_name, list(ids)):
            found[record.id] = record
            found[record.id[:15]] = record
        return {i: found[i] if i in found else found[i[:15]] for i in ids if i in found or i[:15] in found}

    # -- application ------------------------------------------------------------------------------------
    def application(self, flow: FlowRuntime, *, limit: int | None = None) -> FlowPreview:
        pending, limited = self._queued(flow, limit)
        targets = self._links(flow.name, flow.source, list(pending))
        out: list[RecordPreview] = []
        for key, (operation, fields) in pending.items():
            out.append(self._queued_write(flow, key, operation, fields, targets.get(key)))
        out = self._apply_locks(flow, out, pending)
        return FlowPreview(flow.name, "application", flow.source, flow.target, flow.object_name, out, limited)

    def _queued(
        self, flow: FlowRuntime, limit: int | None
    ) -> tuple[dict[str, tuple[str, dict[str, Any]]], bool]:
        """The flow's unfinished changes folded per record, in queue order."""
        c = t.changes.c
        query = (
            sa.select(c.record_key, c.operation, c.payload)
            .where(c.flow == flow.name, c.source == flow.source, c.state.in_(UNFINISHED))
            .order_by(c.id)
        )
        by_key: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
        with self.rt.store.read() as conn:
            for row in conn.execute(query):
                by_key.setdefault(str(row.record_key), []).append(
                    (str(row.operation), dict(row.payload or {}))
                )
        keys = list(by_key)
        limited = limit is not None and len(keys) > limit
        folded: dict[str, tuple[str, dict[str, Any]]] = {}
        for key in keys[:limit] if limit is not None else keys:
            folded[key] = fold(by_key[key])
        return folded, limited

    def _queued_write(
        self, flow: FlowRuntime, key: str, operation: str, fields: Mapping[str, Any], target_id: str | None
    ) -> RecordPreview:
        obj = flow.object_name
        if operation == "delete":
            if flow.on_delete != "delete":
                return RecordPreview(
                    key, "skipped", obj, target_id=target_id, reason=f"on_delete is {flow.on_delete}"
                )
            return RecordPreview(key, "delete", obj, target_id=target_id)
        try:
            mapped = flow.to_target(key, fields)
        except FixTheData as exc:
            return RecordPreview(
                key, "refused", obj, target_id=target_id, reason=f"would be a dead letter: {exc}"
            )
        new = tuple(FieldChange(f, None, v) for f, v in mapped.items())
        if flow.match_field is not None:
            reason = f"upsert by {flow.match_field} = {key}"
            return RecordPreview(key, "upsert", obj, target_id=target_id, fields=new, reason=reason)
        return RecordPreview(key, "update" if target_id else "create", obj, target_id=target_id, fields=new)

    def _apply_locks(
        self,
        flow: FlowRuntime,
        previews: list[RecordPreview],
        pending: Mapping[str, tuple[str, dict[str, Any]]],
    ) -> list[RecordPreview]:
        """Mark the records whose parent the lock rule holds (one query for all, as the worker asks)."""
        if flow.lock is None or not previews:
            return previews
        parents: dict[str, str] = {}
        for p in previews:
            fields = pending[p.record][1]
            parent = flow.lock_parent(fields) or flow.lock_parent(self.rt.ledger.last_synced(flow, p.record))
            if parent is not None and p.action in WRITES:
                parents[p.record] = parent
        if not parents:
            return previews
        try:
            target = require(self.connector(flow.target), Queryable, f"the lock rule of flow {flow.name!r}")
            locked = self.rt.locks.locked(flow, target, set(parents.values()))
        except CrmsyncError as exc:
            note = f"lock rule not asked ({exc}): the worker asks before writing"
            return [_with_reason(p, note) if p.record in parents else p for p in previews]
        out = []
        for p in previews:
            parent = parents.get(p.record)
            if parent is not None and parent in locked:
                message = flow.lock_message({**pending[p.record][1], flow.lock.key: parent})
                p = RecordPreview(
                    p.record, "locked", p.object_name, p.label, p.target_id, p.fields, reason=message
                )
            out.append(p)
        return out


def _with_reason(p: RecordPreview, note: str) -> RecordPreview:
    reason = f"{p.reason}; {note}" if p.reason else note
    return RecordPreview(p.record, p.action, p.object_name, p.label, p.target_id, p.fields, p.related, reason)


def _label(fields: Mapping[str, Any]) -> str | None:
    name = fields.get("name")
    return None if name is None else str(name)
