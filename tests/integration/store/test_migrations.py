from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from crmsync.store import Store
from crmsync.store.schema import metadata


def test_upgrade_on_an_empty_database_makes_it_current(empty_url: str) -> None:
    store = Store(empty_url)
    try:
        assert store.ping()
        assert not store.is_current()
        assert store.current_revision() is None
        store.upgrade()
        assert store.is_current()
        assert store.current_revision() == store.head_revision()
        store.upgrade()  # a second run is a no-op
        assert store.is_current()
        with store.read() as conn:
            tables = set(sa.inspect(conn).get_table_names())
        assert {t.name for t in metadata.sorted_tables} <= tables
    finally:
        store.dispose()


def test_the_migration_creates_exactly_the_schema(store: Store) -> None:
    with store.read() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, metadata)
    assert diff == []
