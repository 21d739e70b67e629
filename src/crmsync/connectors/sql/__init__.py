"""The SQL reporting connector: current-state, history and snapshot tables in the user's own
database (MySQL/MariaDB, PostgreSQL, SQLite), for BI tools to read (see :mod:`.connector`)."""

from crmsync.connectors.sql.changes import Event, SnapshotRow
from crmsync.connectors.sql.connector import SqlConnector
from crmsync.connectors.sql.settings import SqlConnection
from crmsync.connectors.sql.tables import ColumnSpec, ObjectSpec, SchemaRefused, spec_from_describe

__all__ = [
    "ColumnSpec",
    "Event",
    "ObjectSpec",
    "SchemaRefused",
    "SnapshotRow",
    "SqlConnection",
    "SqlConnector",
    "spec_from_describe",
]
