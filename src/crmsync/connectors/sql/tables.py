"""The reporting tables crmsync keeps, and how they are created and migrated.

With ``table_prefix: crm_`` and mapped objects ``card`` and ``opportunity``::

    crm_card, crm_opportunity   current state, one row per record (upsert by source_id)
        source_id      text, primary key: the record's id in its source system
        source_system  text: the connection it comes from
        <columns>      one per mapped field, typed (text/number/integer/boolean/date/datetime/json)
        updated_at     when the record last changed (UTC)
        deleted_at     when it was deleted in its source (UTC); NULL while it exists
    crm_events                  history, one row per change (append only)
        id, at, who, action, object_name, source_id, old_values, new_values (JSON), delivery_id
        (unique: a redelivered change is stored once), recorded_at
    crm_workload_snapshot       one row set per day and board: list_name, member, status, card_count

Columns come from an :class:`ObjectSpec`: the flow's field map (the column names) and the source's
describe (the types, :func:`spec_from_describe`). :func:`plan` compares the wanted tables with the
database (SQLAlchemy's inspector); :func:`migrate` applies the additive changes (new tables, new
columns, wider text) and refuses destructive ones (a dropped, narrowed or retyped column) with
:class:`SchemaRefused`, naming the table, the column, both types and what to do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Connection

from crmsync.connectors.sql.settings import MAX_NAME_LENGTH, NAME, ColumnType
from crmsync.errors import ConfigError

#: text up to this length is VARCHAR(n); longer (or unbounded) text is TEXT (LONGTEXT on MySQL)
MAX_VARCHAR = 1000
ID_LENGTH = 255
#: columns every current-state table has; a field map cannot use these names
FIXED_COLUMNS = ("source_id", "source_system", "updated_at", "deleted_at")
EVENTS = "events"
SNAPSHOT = "workload_snapshot"

LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
#: UTC, without a zone, with microseconds on every database
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

#: source describe types (Salesforce field types, Trello custom field types) → column type
DESCRIBE_TYPES: dict[str, ColumnType] = {
    **dict.fromkeys(
        (
            "string",
            "textarea",
            "picklist",
            "multipicklist",
            "combobox",
            "email",
            "phone",
            "url",
            "id",
            "reference",
            "encryptedstring",
            "time",
            "text",
            "list",
        ),
        "text",
    ),
    **dict.fromkeys(("double", "currency", "percent", "number"), "number"),
    **dict.fromkeys(("int", "long", "integer"), "integer"),
    **dict.fromkeys(("boolean", "checkbox"), "boolean"),
    "date": "date",
    "datetime": "datetime",
    **dict.fromkeys(("address", "location", "anytype", "json"), "json"),
}


class SchemaRefused(ConfigError):
    """The wanted tables need a destructive change; ``problems`` says which and what to do."""


@dataclass(frozen=True)
class ColumnSpec:
    """One mapped column: its name, type and (text) longest length (None: unbounded)."""

    name: str
    type: ColumnType
    length: int | None = None


@dataclass(frozen=True)
class ObjectSpec:
    """What a current-state table holds: the object's name (the table is ``prefix + name``), its
    columns, and the source system written into ``source_system``."""

    name: str
    columns: tuple[ColumnSpec, ...]
    source_system: str = ""

    def __post_init__(self) -> None:
        problems = [f"{n!r} is not a lower-case SQL name" for n in (self.name,) if not NAME.match(n)]
        if self.name in (EVENTS, SNAPSHOT):
            problems.append(f"object name {self.name!r} is taken by crmsync's own {self.name} table")
        seen: set[str] = set()
        for column in self.columns:
            if not NAME.match(column.name) or len(column.name) > MAX_NAME_LENGTH:
                problems.append(
                    f"column {column.name!r} of {self.name}: use lower case letters, digits and _"
                )
            if column.name in FIXED_COLUMNS:
                problems.append(f"column {column.name!r} of {self.name} is one of crmsync's own columns")
            if column.name in seen:
                problems.append(f"column {column.name!r} of {self.name} is mapped twice")
            seen.add(column.name)
        if problems:
            raise ConfigError(
                f"invalid reporting table {self.name!r}: " + "; ".join(problems), problems=problems
            )

    def column(self, name: str) -> ColumnSpec | None:
        return next((c for c in self.columns if c.name == name), None)


def spec_from_describe(
    name: str,
    field_map: Mapping[str, str],
    describe: Mapping[str, Any] | None = None,
    *,
    overrides: Mapping[str, ColumnType] | None = None,
    source_system: str = "",
) -> ObjectSpec:
    """The spec of a table whose columns are ``field_map``'s keys, typed from the source fields
    (its values) in ``describe`` (``{"fields": [{"name", "type", "length"}, ...]}``, as Salesforce
    answers); ``overrides`` (``column_types`` of the settings) win; anything unknown is text."""
    by_name = {str(f.get("name")): f for f in (describe or {}).get("fields", [])}
    columns = []
    for column, source_field in field_map.items():
        info = by_name.get(source_field, {})
        kind: ColumnType = DESCRIBE_TYPES.get(str(info.get("type", "")).lower(), "text")
        if overrides and column in overrides:
            kind = overrides[column]
        length = info.get("length") if kind == "text" else None
        columns.append(
            ColumnSpec(column, kind, int(length) if length and 0 < int(length) <= MAX_VARCHAR else None)
        )
    return ObjectSpec(name, tuple(columns), source_system)


def column_type(spec: ColumnSpec) -> sa.types.TypeEngine[Any]:
    if spec.type == "text":
        return sa.String(spec.length) if spec.length and spec.length <= MAX_VARCHAR else LongText
    types: dict[str, sa.types.TypeEngine[Any]] = {
        "number": sa.Double(),
        "integer": sa.BigInteger(),
        "boolean": sa.Boolean(create_constraint=False),
        "date": sa.Date(),
        "datetime": Timestamp,
        "json": Json,
    }
    return types[spec.type]


@dataclass(frozen=True)
class Tables:
    """The SQLAlchemy tables of one connection, by object name (plus events and snapshot)."""

    metadata: sa.MetaData
    objects: dict[str, sa.Table]
    specs: dict[str, ObjectSpec]
    events: sa.Table
    snapshot: sa.Table


def build_tables(specs: Sequence[ObjectSpec], prefix: str, schema: str | None) -> Tables:
    metadata = sa.MetaData(schema=schema)
    objects = {}
    for spec in specs:
        name = _table_name(prefix, spec.name)
        objects[spec.name] = sa.Table(
            name,
            metadata,
            sa.Column("source_id", sa.String(ID_LENGTH), primary_key=True),
            sa.Column("source_system", sa.String(64), nullable=False),
            *(sa.Column(c.name, column_type(c), nullable=True) for c in spec.columns),
            sa.Column("updated_at", Timestamp, nullable=False),
            sa.Column("deleted_at", Timestamp, nullable=True),
        )
    events_name = _table_name(prefix, EVENTS)
    events = sa.Table(
        events_name,
        metadata,
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("at", Timestamp, nullable=False),
        sa.Column("who", sa.String(ID_LENGTH), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("object_name", sa.String(MAX_NAME_LENGTH), nullable=False),
        sa.Column("source_id", sa.String(ID_LENGTH), nullable=False),
        sa.Column("old_values", Json, nullable=True),
        sa.Column("new_values", Json, nullable=True),
        sa.Column("delivery_id", sa.String(ID_LENGTH), nullable=True),
        sa.Column("recorded_at", Timestamp, nullable=False),
        sa.UniqueConstraint("delivery_id", name=f"uq_{events_name}_delivery"),
        sa.Index(f"ix_{events_name}_record", "object_name", "source_id", "at"),
        sa.Index(f"ix_{events_name}_at", "at"),
    )
    snapshot_name = _table_name(prefix, SNAPSHOT)
    snapshot = sa.Table(
        snapshot_name,
        metadata,
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("snapshot_date", sa.Date(), nullable=False),
        sa.Column("board", sa.String(ID_LENGTH), nullable=False),
        sa.Column("list_name", sa.String(ID_LENGTH), nullable=False),
        sa.Column("member", sa.String(ID_LENGTH), nullable=True),
        sa.Column("status", sa.String(64), nullable=True),
        sa.Column("card_count", sa.Integer(), nullable=False),
        sa.Column("taken_at", Timestamp, nullable=False),
        sa.Index(f"ix_{snapshot_name}_day", "snapshot_date", "board"),
    )
    return Tables(metadata, objects, {s.name: s for s in specs}, events, snapshot)


def _table_name(prefix: str, name: str) -> str:
    table = f"{prefix}{name}"
    if len(table) > MAX_NAME_LENGTH - 10:  # room for the ix_/uq_ names of its indexes
        raise ConfigError(f"table name {table!r} is too long: use a shorter prefix or object name")
    return table


# ---------------------------------------------------------------- comparing and migrating

Kind = tuple[str, int | None]


def kind_of(type_: sa.types.TypeEngine[Any]) -> Kind:
    """The (column type, text length) a database type stands for, or (its SQL name, None)."""
    if isinstance(type_, sa.TypeDecorator):
        type_ = type_.impl_instance
    if isinstance(type_, sa.Boolean) or (
        isinstance(type_, mysql.TINYINT) and getattr(type_, "display_width", None) == 1
    ):
        return ("boolean", None)
    if isinstance(type_, sa.Integer):
        return ("integer", None)
    if isinstance(type_, sa.Float | sa.Numeric):
        return ("number", None)
    if isinstance(type_, sa.DateTime):
        return ("datetime", None)
    if isinstance(type_, sa.Date):
        return ("date", None)
    if isinstance(type_, sa.JSON):
        return ("json", None)
    if isinstance(type_, sa.String):  # VARCHAR, TEXT, LONGTEXT, ...
        length = type_.length if not isinstance(type_, sa.Text) else None
        return ("text", length)
    return (str(type_.__class__.__visit_name__).upper(), None)


def _shown(kind: Kind) -> str:
    name, length = kind
    return f"text({length})" if name == "text" and length else name


@dataclass(frozen=True)
class Change:
    """One additive change: a new table, a new column, or a wider text column."""

    action: Literal["create table", "add column", "widen column"]
    table: str
    column: str | None = None
    detail: str = ""

    def __str__(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        return f"{self.action} {where}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def plan(conn: Connection, tables: Tables) -> Plan:
    """What it takes to bring the database to ``tables``: additive changes, and refusals."""
    inspector = sa.inspect(conn)
    schema = tables.metadata.schema
    present = set(inspector.get_table_names(schema=schema))
    result = Plan()
    on_mysql = conn.dialect.name in ("mysql", "mariadb")
    for table in tables.metadata.sorted_tables:
        if table.name not in present:
            result.changes.append(Change("create table", table.name))
            continue
        existing = {c["name"].lower(): c for c in inspector.get_columns(table.name, schema=schema)}
        for column in table.columns:
            found = existing.pop(column.name, None)
            wanted = kind_of(column.type.dialect_impl(conn.dialect))
            if found is None:
                result.changes.append(Change("add column", table.name, column.name, _shown(wanted)))
                continue
            have = kind_of(found["type"])
            if wanted == have or (on_mysql and wanted[0] == "json" and have == ("text", None)):
                continue  # MariaDB keeps JSON as LONGTEXT
            if wanted[0] == have[0] == "text":
                if have[1] is not None and (wanted[1] is None or wanted[1] > have[1]):
                    result.changes.append(
                        Change("widen column", table.name, column.name, f"{_shown(have)} → {_shown(wanted)}")
                    )
                else:
                    result.problems.append(_narrowed(table.name, column.name, have, wanted))
                continue
            result.problems.append(_retyped(table.name, column.name, have, wanted))
        result.problems.extend(_dropped(table.name, name, kind_of(c["type"])) for name, c in existing.items())
    return result


def _narrowed(table: str, column: str, have: Kind, wanted: Kind) -> str:
    return (
        f"table {table}, column {column}: the database has {_shown(have)}, the mapping now wants "
        f"{_shown(wanted)}; crmsync never narrows a column (values would be cut): give the source "
        f"field its length back, or change the column yourself and start again"
    )


def _retyped(table: str, column: str, have: Kind, wanted: Kind) -> str:
    return (
        f"table {table}, column {column}: the database has {_shown(have)}, the mapping now wants "
        f"{_shown(wanted)}; crmsync never changes a column's type (values could be lost): keep the "
        f"old type with column_types, or drop the column yourself (ALTER TABLE {table} DROP COLUMN "
        f"{column}) and crmsync adds it again, empty"
    )


def _dropped(table: str, column: str, have: Kind) -> str:
    return (
        f"table {table}, column {column} ({_shown(have)}) is no longer mapped; crmsync never drops "
        f"a column (its values would be lost): map it again, or drop it yourself "
        f"(ALTER TABLE {table} DROP COLUMN {column})"
    )


def migrate(conn: Connection, tables: Tables) -> Plan:
    """Apply the additive changes of :func:`plan`, or raise :class:`SchemaRefused` (changing nothing)."""
    result = plan(conn, tables)
    if result.problems:
        raise SchemaRefused(
            f"the reporting tables need {len(result.problems)} destructive change(s) crmsync will not make: "
            + "; ".join(result.problems),
            problems=result.problems,
        )
    schema = tables.metadata.schema
    if schema and conn.dialect.name == "postgresql" and result.changes:
        conn.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
    ops = Operations(MigrationContext.configure(conn))
    by_name = {t.name: t for t in tables.metadata.sorted_tables}
    for change in result.changes:
        table = by_name[change.table]
        if change.action == "create table":
            table.create(conn, checkfirst=True)
        elif change.action == "add column" and change.column is not None:
            column = table.c[change.column]
            ops.add_column(table.name, sa.Column(column.name, column.type, nullable=True), schema=schema)
        elif change.column is not None and conn.dialect.name == "sqlite":
            # SQLite cannot alter a column: the table is copied into a new one (Alembic's batch mode)
            with ops.batch_alter_table(table.name, schema=schema, recreate="always") as batch:
                batch.alter_column(change.column, type_=table.c[change.column].type, existing_nullable=True)
        elif change.column is not None:
            column = table.c[change.column]
            ops.alter_column(
                table.name, column.name, type_=column.type, existing_nullable=True, schema=schema
            )
    return result
