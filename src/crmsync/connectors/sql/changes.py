"""Writes on their way into a current-state table, with the events that tell them.

A write names its record by the source's id (``target_id``, else ``external_id``, else its key).
Its event comes from the write's ``meta`` (:class:`~crmsync.connectors.base.EventMeta`): the
source's action type (default create / update / delete), who, when it happened at the source
(default now), the source's id of the change (a delivery already recorded is skipped) and, for an
event that changes no column, what it says (a comment's text: its ``new_values``).

A history row's ``old_values`` / ``new_values`` are the event's own when it says what it set and
what that replaced (``Write.changed`` / ``Write.previous``, with what its ``details`` say before
and after; a deletion sets ``deleted_at``): the same row whenever the event arrives, before or
after others of the record. Otherwise they are computed against the row: the columns the write
changed, as the row held them before and after.
:func:`apply` reads the rows first (locked, in one order for every writer), then writes only what
changed: one event per write that changed something or carries a new delivery id, and nothing at
all for a write applied before.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from crmsync.connectors.base import Write, WriteResult
from crmsync.connectors.sql.tables import ID_LENGTH, ObjectSpec
from crmsync.connectors.sql.values import coerce, jsonable, utc_naive
from crmsync.errors import Fatal, FixTheData


@dataclass(frozen=True)
class Event:
    """One row of the history table, for changes that touch no current-state row (a comment)."""

    object_name: str
    source_id: str
    action: str
    at: dt.datetime | str | None = None
    who: str | None = None
    old_values: Mapping[str, Any] | None = None
    new_values: Mapping[str, Any] | None = None
    delivery_id: str | None = None


@dataclass(frozen=True)
class SnapshotRow:
    """Cards in one list, of one member (None: nobody), in one status, on the snapshot's day."""

    list_name: str
    member: str | None
    status: str | None
    count: int


@dataclass
class PendingWrite:
    """One write, ready to apply."""

    index: int
    key: str
    source_id: str
    delete: bool
    values: dict[str, Any]
    at: dt.datetime
    who: str | None
    #: None: create, update or delete, as the write turns out
    action: str | None
    delivery_id: str | None
    #: what the event says when it changes no column (a comment's text)
    details: dict[str, Any]
    #: the event's own ``(new_values, old_values)`` when it says what it set and replaced
    #: (``Write.changed`` / ``Write.previous``): recorded as they are, whatever the row holds
    told: tuple[dict[str, Any], dict[str, Any]] | None = None


def pending_write(
    spec: ObjectSpec, index: int, w: Write, *, now: dt.datetime, check_length: bool, refuse_nul: bool = False
) -> PendingWrite:
    """What one write asks for, its values converted to their columns (``check_length``,
    ``refuse_nul``: as :func:`~crmsync.connectors.sql.values.coerce`); FixTheData naming the column,
    or Fatal, if it cannot be."""
    source_id = str(w.target_id or w.external_id or w.key or "")
    if not source_id or len(source_id) > ID_LENGTH:
        raise FixTheData(f"a record needs a source id of 1 to {ID_LENGTH} characters", object_name=spec.name)
    values: dict[str, Any] = {}
    for name, value in w.fields.items():
        column = spec.column(name)
        if column is None:
            known = ", ".join(c.name for c in spec.columns)
            raise Fatal(
                f"field {name!r} has no column in the reporting table of {spec.name} (columns: {known}); "
                "declare it with the flow's field map",
                object_name=spec.name,
                record=source_id,
            )
        try:
            values[name] = coerce(column, value, check_length=check_length, refuse_nul=refuse_nul)
        except ValueError as exc:
            raise FixTheData(f"column {name}: {exc}", object_name=spec.name, record=source_id) from None
    meta = w.meta
    try:
        at = utc_naive(meta.at) if meta is not None and meta.at is not None else now
    except ValueError as exc:
        raise FixTheData(f"event time: {exc}", object_name=spec.name, record=source_id) from None
    delete = w.operation == "delete"
    told = None
    if w.changed is not None and w.previous is not None and meta is not None:
        told = (
            {**_jsonable(meta.details), **_event_values(spec, w.changed)},
            {**_jsonable(meta.previous_details), **_event_values(spec, w.previous)},
        )
    return PendingWrite(
        index=index,
        key=w.key,
        source_id=source_id,
        delete=delete,
        values=values,
        at=at,
        who=str(meta.who) if meta is not None and meta.who is not None else None,
        action=str(meta.action) if meta is not None and meta.action else None,
        delivery_id=str(meta.delivery_id) if meta is not None and meta.delivery_id else None,
        details=_jsonable(meta.details) if meta is not None else {},
        told=told,
    )


def _jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: jsonable(v) for k, v in values.items()}


def _event_values(spec: ObjectSpec, values: Mapping[str, Any]) -> dict[str, Any]:
    """An event's own values of columns, as their columns hold them (JSON-ready); a value a
    column would refuse is kept as the event tells it: the history says what happened."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        column = spec.column(name)
        if column is None:
            continue
        try:
            out[name] = jsonable(coerce(column, value, check_length=False))
        except ValueError:
            out[name] = jsonable(value)
    return out


def apply(
    conn: Connection,
    table: sa.Table,
    events_table: sa.Table,
    spec: ObjectSpec,
    writes: Sequence[PendingWrite],
    *,
    now: dt.datetime,
) -> list[tuple[int, WriteResult]]:
    """Apply ``writes`` in ``conn``'s transaction: rows upserted or soft-deleted, events appended;
    ``(index, result)`` for each."""
    ops = writes
    ids = sorted({op.source_id for op in ops})  # one lock order for every writer: no deadlocks
    query = sa.select(table).where(table.c.source_id.in_(ids)).order_by(table.c.source_id)
    state: dict[str, dict[str, Any]] = {
        row["source_id"]: dict(row) for row in conn.execute(query.with_for_update()).mappings()
    }
    seen = recorded(conn, events_table, [op.delivery_id for op in ops if op.delivery_id])
    inserted: set[str] = set()
    changed_rows: dict[str, dict[str, Any]] = {}
    events: list[dict[str, Any]] = []
    done: list[tuple[int, WriteResult]] = []
    recorded_at = now
    for op in ops:
        if op.delivery_id in seen:
            done.append((op.index, WriteResult(op.key, True, target_id=op.source_id, created=False)))
            continue
        if op.delivery_id:
            seen.add(op.delivery_id)
        current = state.get(op.source_id)
        created = current is None and not op.delete
        wanted: dict[str, Any]
        if op.delete:
            wanted = {"deleted_at": op.at} if current is not None and current["deleted_at"] is None else {}
        else:
            wanted = dict(op.values)
            if current is not None and current["deleted_at"] is not None:
                wanted["deleted_at"] = None  # written again after a delete: it exists again
        before = dict(current) if current is not None else {}
        changes = {c: v for c, v in wanted.items() if created or before.get(c) != v}
        if created:
            row: dict[str, Any] = {c.name: None for c in table.columns}
            row.update(source_id=op.source_id, source_system=spec.source_system, **changes)
            row["updated_at"] = op.at
            state[op.source_id] = row
            inserted.add(op.source_id)
        elif changes and current is not None:
            current.update(changes)
            current["updated_at"] = max(current["updated_at"], op.at)
            pending = changed_rows.setdefault(op.source_id, {})
            pending.update(changes, updated_at=current["updated_at"])
        if changes or op.delivery_id:
            if op.told is not None:  # the event's own values, whatever the row held
                new_values, old_values = op.told
                if op.delete:
                    new_values = {"deleted_at": jsonable(op.at), **new_values}
                    old_values = {"deleted_at": None, **old_values}
            else:  # what the row held before, and the columns this write changed
                old_values = {c: jsonable(before.get(c)) for c in changes if not created}
                new_values = {
                    c: jsonable(v) for c, v in changes.items() if v is not None or not created
                } or op.details
            events.append(
                {
                    "at": op.at,
                    "who": op.who,
                    "action": op.action or ("create" if created else "delete" if op.delete else "update"),
                    "object_name": spec.name,
                    "source_id": op.source_id,
                    "old_values": old_values,
                    "new_values": new_values,
                    "delivery_id": op.delivery_id,
                    "recorded_at": recorded_at,
                }
            )
        done.append((op.index, WriteResult(op.key, True, target_id=op.source_id, created=created)))
    if inserted:
        conn.execute(sa.insert(table), [state[i] for i in sorted(inserted)])
    for source_id, values in changed_rows.items():
        if source_id not in inserted:
            conn.execute(sa.update(table).where(table.c.source_id == source_id).values(**values))
    if events:
        conn.execute(sa.insert(events_table), events)
    return done


def recorded(conn: Connection, events: sa.Table, delivery_ids: Sequence[str | None]) -> set[str]:
    """Those of ``delivery_ids`` already in the history table."""
    wanted = sorted({d for d in delivery_ids if d})
    if not wanted:
        return set()
    query = sa.select(events.c.delivery_id).where(events.c.delivery_id.in_(wanted))
    return {str(d) for d in conn.execute(query).scalars()}
