"""The connection pool to a reporting database.

PostgreSQL and MySQL/MariaDB run at READ COMMITTED with pre-pinged pooled connections. SQLite
runs in WAL mode (BI tools read while crmsync writes) and every write transaction starts with
``BEGIN IMMEDIATE``, so that writers queue at the start of a transaction instead of failing
half-way; reads ask for ``sqlite_begin="DEFERRED"``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from crmsync.connectors.sql.settings import SqlConnection

SQLITE_BUSY_TIMEOUT_S = 30.0


def create_engine(settings: SqlConnection) -> Engine:
    url = settings.sqlalchemy_url()
    if settings.backend != "sqlite":
        if settings.backend == "mysql" and "charset" not in url.query:
            url = url.update_query_dict({"charset": "utf8mb4"})
        return sa.create_engine(
            url,
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
            pool_timeout=settings.pool_timeout_seconds,
            pool_recycle=int(settings.pool_recycle_seconds),
            pool_pre_ping=True,
            isolation_level="READ COMMITTED",
            connect_args={"connect_timeout": settings.connect_timeout_seconds},
        )
    memory = url.database in (None, "", ":memory:")
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S}}
    if memory:
        kwargs["poolclass"] = StaticPool  # one shared connection: every thread sees one database
    engine = sa.create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.isolation_level = None  # transactions begin in _on_begin
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            if not memory:
                cursor.execute("PRAGMA journal_mode = WAL")  # BI tools read while crmsync writes
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # writers queue at the start of their transaction instead of failing half-way
        conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('sqlite_begin', 'IMMEDIATE')}")

    return engine
