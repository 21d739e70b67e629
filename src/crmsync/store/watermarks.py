"""Watermarks: how far each connection has read the changes of each object (e.g. the last
``SystemModstamp`` polled from Salesforce). Opaque text, owned by the connector."""

from __future__ import annotations

import sqlalchemy as sa

from crmsync.store.db import StoreOrConnection, connection, upsert
from crmsync.store.schema import utcnow, watermarks


def get(db: StoreOrConnection, connection_name: str, object_name: str) -> str | None:
    c = watermarks.c
    query = sa.select(c.value).where(c.connection == connection_name, c.object_name == object_name)
    with connection(db, write=False) as conn:
        value = conn.execute(query).scalar_one_or_none()
    return None if value is None else str(value)


def put(db: StoreOrConnection, connection_name: str, object_name: str, value: str | None) -> None:
    key = {"connection": connection_name, "object_name": object_name}
    with connection(db) as conn:
        upsert(conn, watermarks, key, {"value": value, "updated_at": utcnow()})
