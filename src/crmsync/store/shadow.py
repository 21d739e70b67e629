"""Shadow state: the last value synced, per field, of each record in each system.

The worker compares an incoming change with the shadow to drop its own writes coming back
(echo suppression) and to detect that both sides changed a field (conflict detection).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import sqlalchemy as sa

from crmsync.store.db import StoreOrConnection, connection, upsert
from crmsync.store.schema import shadow, utcnow


def get_shadow(db: StoreOrConnection, system: str, object_name: str, record_id: str) -> dict[str, Any] | None:
    """The fields last synced for this record, or None if it was never synced."""
    c = shadow.c
    query = sa.select(c.fields).where(
        c.system == system, c.object_name == object_name, c.record_id == record_id
    )
    with connection(db, write=False) as conn:
        fields = conn.execute(query).scalar_one_or_none()
    return dict(fields) if fields is not None else None


def get_shadows(
    db: StoreOrConnection, system: str, object_name: str, record_ids: Collection[str]
) -> dict[str, dict[str, Any]]:
    """The shadows of many records at once (records never synced are absent)."""
    c = shadow.c
    found: dict[str, dict[str, Any]] = {}
    ids = sorted(set(record_ids))
    with connection(db, write=False) as conn:
        for start in range(0, len(ids), 500):
            query = sa.select(c.record_id, c.fields).where(
                c.system == system, c.object_name == object_name, c.record_id.in_(ids[start : start + 500])
            )
            found.update({r.record_id: dict(r.fields) for r in conn.execute(query)})
    return found


def put_shadow(
    db: StoreOrConnection,
    system: str,
    object_name: str,
    record_id: str,
    fields: Mapping[str, Any],
    *,
    replace: bool = False,
) -> dict[str, Any]:
    """Record the values just synced. They are merged into the fields already known unless
    ``replace``; returns the record's whole shadow."""
    key = {"system": system, "object_name": object_name, "record_id": record_id}
    with connection(db) as conn:
        merged: dict[str, Any] = {}
        if not replace:
            c = shadow.c
            query = sa.select(c.fields).where(*(c[k] == v for k, v in key.items()))
            if conn.dialect.name != "sqlite":
                query = query.with_for_update()
            merged = dict(conn.execute(query).scalar_one_or_none() or {})
        merged.update(fields)
        upsert(conn, shadow, key, {"fields": merged, "updated_at": utcnow()})
    return merged


def delete_shadow(db: StoreOrConnection, system: str, object_name: str, record_id: str) -> bool:
    c = shadow.c
    with connection(db) as conn:
        result = conn.execute(
            sa.delete(shadow).where(
                c.system == system, c.object_name == object_name, c.record_id == record_id
            )
        )
        return bool(result.rowcount)
