"""Links: which record in the target system is which record in the source, per flow."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from crmsync.errors import FixTheData
from crmsync.store.db import StoreOrConnection, connection, upsert
from crmsync.store.schema import links, utcnow


@dataclass(frozen=True)
class Link:
    flow: str
    source_system: str
    source_key: str
    target_system: str
    target_id: str


_COLUMNS = (
    links.c.flow,
    links.c.source_system,
    links.c.source_key,
    links.c.target_system,
    links.c.target_id,
)


def get_link(db: StoreOrConnection, flow: str, source_system: str, source_key: str) -> Link | None:
    """The link of a source record, if it has been linked."""
    c = links.c
    query = sa.select(*_COLUMNS).where(
        c.flow == flow, c.source_system == source_system, c.source_key == source_key
    )
    with connection(db, write=False) as conn:
        row = conn.execute(query).first()
    return Link(*row) if row is not None else None


def find_by_target(db: StoreOrConnection, flow: str, target_system: str, target_id: str) -> Link | None:
    """The link pointing at a target record (e.g. to map a webhook from the target back)."""
    c = links.c
    query = sa.select(*_COLUMNS).where(
        c.flow == flow, c.target_system == target_system, c.target_id == target_id
    )
    with connection(db, write=False) as conn:
        row = conn.execute(query).first()
    return Link(*row) if row is not None else None


def put_link(
    db: StoreOrConnection, flow: str, source_system: str, source_key: str, target_system: str, target_id: str
) -> Link:
    """Link a source record to a target record (replacing the source record's earlier link).
    Raises FixTheData if the target record is already linked to another source record."""
    now = utcnow()
    key = {"flow": flow, "source_system": source_system, "source_key": source_key}
    values = {"target_system": target_system, "target_id": target_id, "updated_at": now}
    try:
        with connection(db) as conn, conn.begin_nested():
            c = links.c
            exists = conn.execute(sa.select(c.id).where(*(c[k] == v for k, v in key.items()))).first()
            if exists is None:
                values["created_at"] = now
            upsert(conn, links, key, values)
    except IntegrityError as exc:
        other = find_by_target(db, flow, target_system, target_id)
        raise FixTheData(
            f"{target_system} record {target_id} is already linked to "
            f"{other.source_system if other else source_system} record {other.source_key if other else '?'}",
            record=source_key,
        ) from exc
    return Link(flow, source_system, source_key, target_system, target_id)


def sources_of(
    db: StoreOrConnection, flow: str, target_system: str, target_ids: Sequence[str]
) -> dict[str, str]:
    """The source keys of the target records linked in ``flow``: target id → source key (one
    query per 500 ids; ids not linked are left out)."""
    c = links.c
    wanted = sorted(set(target_ids))
    found: dict[str, str] = {}
    with connection(db, write=False) as conn:
        for start in range(0, len(wanted), 500):
            query = sa.select(c.target_id, c.source_key).where(
                c.flow == flow, c.target_system == target_system, c.target_id.in_(wanted[start : start + 500])
            )
            found.update({str(r.target_id): str(r.source_key) for r in conn.execute(query)})
    return found
