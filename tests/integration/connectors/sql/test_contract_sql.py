"""The connector contract, run against the SQL reporting connector on SQLite, PostgreSQL and MariaDB.

The far side is the database itself, read and changed with plain SQL (not through the connector)."""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from crmsync.connectors.contract import ConnectorContract, Harness
from crmsync.connectors.sql import ColumnSpec, ObjectSpec, SqlConnector

CONTACT = ObjectSpec(
    "contact",
    (ColumnSpec("name", "text", 40), ColumnSpec("email", "text", 80), ColumnSpec("ext", "text", 40)),
    "contract",
)


class SqlHarness(Harness):
    object_name = "contact"
    key_field = "ext"

    def __init__(self, make: Callable[..., SqlConnector], url: str, missing_url: str) -> None:
        self.connector: SqlConnector = make([CONTACT])
        self.connector.prepare()
        self._make = make
        self._missing_url = missing_url
        self.table = self.connector.table("contact")
        self.far = sa.create_engine(url, poolclass=sa.pool.NullPool)
        self._fail = False
        sa.event.listen(self.connector.engine, "before_cursor_execute", self._maybe_fail)

    def _maybe_fail(self, conn: sa.Connection, cursor: Any, statement: str, *args: Any) -> None:
        if self._fail:
            self._fail = False
            raise conn.dialect.loaded_dbapi.OperationalError("server closed the connection unexpectedly")

    def new_fields(self, n: int) -> dict[str, Any]:
        return {"name": f"Contact {n}", "email": f"c{n}@example.com", "ext": self.key(n)}

    def changed_fields(self, n: int) -> dict[str, Any]:
        return {"name": f"Renamed {n}", "email": f"r{n}@example.com"}

    def refused_fields(self) -> dict[str, Any]:
        return {"name": "A name far longer than the forty characters of its column"}

    def far_get(self, record_id: str, object_name: str | None = None) -> Mapping[str, Any] | None:
        query = sa.select(self.table).where(
            self.table.c.source_id == record_id, self.table.c.deleted_at.is_(None)
        )
        with self.far.connect() as conn:
            row = conn.execute(query).mappings().first()
        return dict(row) if row is not None else None

    def far_ids(self, object_name: str | None = None) -> set[str]:
        with self.far.connect() as conn:
            query = sa.select(self.table.c.source_id).where(self.table.c.deleted_at.is_(None))
            return set(conn.execute(query).scalars())

    def far_create(self, fields: Mapping[str, Any]) -> str:
        record_id = uuid.uuid4().hex
        row = {
            "source_id": record_id,
            "source_system": "far",
            "updated_at": dt.datetime(2025, 1, 1),
            **fields,
        }
        with self.far.begin() as conn:
            conn.execute(sa.insert(self.table).values(**row))
        return record_id

    def far_update(self, record_id: str, fields: Mapping[str, Any]) -> None:
        with self.far.begin() as conn:
            conn.execute(sa.update(self.table).where(self.table.c.source_id == record_id).values(**fields))

    def far_delete(self, record_id: str) -> None:
        with self.far.begin() as conn:
            query = sa.update(self.table).where(self.table.c.source_id == record_id)
            conn.execute(query.values(deleted_at=dt.datetime(2025, 1, 2)))

    def fail_next_call(self) -> None:
        self._fail = True

    def refused_connector(self) -> SqlConnector:
        return self._make([CONTACT], url=self._missing_url)


class TestSqlContract(ConnectorContract):
    connector_class = SqlConnector
    upserts = True  # by the source's id
    replays_creates = True  # a create is keyed by the source's id too

    @pytest.fixture
    def harness(
        self, make_connector: Callable[..., SqlConnector], sql_url: str, tmp_path: Path
    ) -> Iterator[SqlHarness]:
        if sql_url.startswith("sqlite"):
            missing = f"sqlite:///{tmp_path / 'no-such-folder' / 'reports.db'}"
        else:
            missing = (
                make_url(sql_url)
                .set(database=f"missing_{secrets.token_hex(3)}")
                .render_as_string(hide_password=False)
            )
        harness = SqlHarness(make_connector, sql_url, missing)
        yield harness
        harness.far.dispose()
