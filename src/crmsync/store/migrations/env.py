"""Alembic environment of the crmsync store.

:meth:`crmsync.store.db.Store.upgrade` runs the migrations in code, handing over an open
connection in ``config.attributes["connection"]``; no ``alembic.ini`` is needed at run time. For
development with the ``alembic`` command, set ``CRMSYNC_DATABASE_URL`` and pass
``-x script_location`` via an ini of your own.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy.engine import Connection

from crmsync.store.schema import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from crmsync.store.db import Store

    url = config.get_main_option("sqlalchemy.url") or os.environ.get("CRMSYNC_DATABASE_URL")
    if not url:
        raise RuntimeError("no database: set sqlalchemy.url or CRMSYNC_DATABASE_URL")
    store = Store(url)
    try:
        with store.begin() as conn:
            _run(conn)
    finally:
        store.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported; run crmsync db upgrade")
run_migrations_online()
