"""The store's tables, as SQLAlchemy Core metadata.

The Alembic revisions under ``migrations/versions`` create exactly these tables; a test compares
the two. Conventions, the same on SQLite, PostgreSQL and MariaDB/MySQL:

- states and outcomes are text columns with CHECK constraints, never database ENUMs;
- timestamps are UTC, stored without a zone (microseconds on MySQL too) and read back aware;
- JSON is stored as text (``JSONText``) so that every database stores and returns the same thing;
- ids are 64-bit integers (plain ``INTEGER`` rowids on SQLite, which are 64-bit there).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect

CHANGE_OPERATIONS = ("upsert", "delete")
CHANGE_STATES = ("pending", "leased", "done", "dead")
LOG_OUTCOMES = ("applied", "retry", "dead", "refused", "skipped", "conflict", "received")
JOB_STATUSES = ("running", "succeeded", "failed")
USER_ROLES = ("viewer", "admin")

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


class UTCDateTime(sa.TypeDecorator[datetime]):
    """An aware UTC datetime, stored naive in UTC with microseconds on every database."""

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return super().load_dialect_impl(dialect)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store takes aware UTC datetimes only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


class JSONText(sa.TypeDecorator[Any]):
    """Any JSON-able value, stored as compact JSON text (LONGTEXT on MySQL)."""

    impl = sa.Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.LONGTEXT())
        return super().load_dialect_impl(dialect)

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return json.loads(value)


def _check_in(column: str, values: tuple[str, ...], name: str) -> sa.CheckConstraint:
    listed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=name)


def utcnow() -> datetime:
    return datetime.now(UTC)


_TABLE_ARGS: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}

metadata = sa.MetaData(naming_convention={"pk": "pk_%(table_name)s"})

changes = sa.Table(
    "changes",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(100), nullable=False),
    sa.Column("flow", sa.String(100), nullable=False),
    sa.Column("record_key", sa.String(255), nullable=False),
    sa.Column("operation", sa.String(10), nullable=False),
    sa.Column("payload", JSONText(), nullable=False),
    sa.Column("delivery_id", sa.String(255), nullable=True),
    sa.Column("state", sa.String(10), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("available_at", UTCDateTime(), nullable=False),
    sa.Column("lease_owner", sa.String(200), nullable=True),
    sa.Column("leased_until", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("last_error", JSONText(), nullable=True),
    sa.Column("meta", JSONText(), nullable=True),
    _check_in("operation", CHANGE_OPERATIONS, "ck_changes_operation"),
    _check_in("state", CHANGE_STATES, "ck_changes_state"),
    sa.UniqueConstraint("source", "delivery_id", name="uq_changes_delivery"),
    sa.Index("ix_changes_claim", "state", "available_at", "id"),
    sa.Index("ix_changes_record", "flow", "record_key", "id"),
    sqlite_autoincrement=True,
    **_TABLE_ARGS,
)

dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("change_ids", JSONText(), nullable=False),
    sa.Column("source", sa.String(100), nullable=False),
    sa.Column("flow", sa.String(100), nullable=False),
    sa.Column("record_key", sa.String(255), nullable=False),
    sa.Column("operation", sa.String(10), nullable=False),
    sa.Column("payload", JSONText(), nullable=False),
    sa.Column("error", JSONText(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("replay_requested_at", UTCDateTime(), nullable=True),
    sa.Column("discarded_at", UTCDateTime(), nullable=True),
    sa.Column("discard_reason", sa.Text(), nullable=True),
    _check_in("operation", CHANGE_OPERATIONS, "ck_dead_letters_operation"),
    sa.Index("ix_dead_letters_flow", "flow", "id"),
    **_TABLE_ARGS,
)

links = sa.Table(
    "links",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("flow", sa.String(100), nullable=False),
    sa.Column("source_system", sa.String(100), nullable=False),
    sa.Column("source_key", sa.String(255), nullable=False),
    sa.Column("target_system", sa.String(100), nullable=False),
    sa.Column("target_id", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("flow", "source_system", "source_key", name="uq_links_source"),
    sa.UniqueConstraint("flow", "target_system", "target_id", name="uq_links_target"),
    **_TABLE_ARGS,
)

shadow = sa.Table(
    "shadow",
    metadata,
    sa.Column("system", sa.String(100), primary_key=True),
    sa.Column("object_name", sa.String(100), primary_key=True),
    sa.Column("record_id", sa.String(255), primary_key=True),
    sa.Column("fields", JSONText(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    **_TABLE_ARGS,
)

watermarks = sa.Table(
    "watermarks",
    metadata,
    sa.Column("connection", sa.String(100), primary_key=True),
    sa.Column("object_name", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text(), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    **_TABLE_ARGS,
)

sync_log = sa.Table(
    "sync_log",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("flow", sa.String(100), nullable=False),
    sa.Column("record_key", sa.String(255), nullable=False),
    sa.Column("operation", sa.String(20), nullable=True),
    sa.Column("source", sa.String(100), nullable=True),
    sa.Column("target", sa.String(100), nullable=True),
    sa.Column("outcome", sa.String(10), nullable=False),
    sa.Column("target_id", sa.String(255), nullable=True),
    sa.Column("message", sa.Text(), nullable=True),
    sa.Column("change_ids", JSONText(), nullable=True),
    sa.Column("attempt", sa.Integer(), nullable=True),
    _check_in("outcome", LOG_OUTCOMES, "ck_sync_log_outcome"),
    sa.Index("ix_sync_log_record", "flow", "record_key", "id"),
    sa.Index("ix_sync_log_at", "at"),
    **_TABLE_ARGS,
)

job_runs = sa.Table(
    "job_runs",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("job", sa.String(100), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("message", sa.Text(), nullable=True),
    sa.Column("progress_done", sa.BigInteger(), nullable=True),
    sa.Column("progress_total", sa.BigInteger(), nullable=True),
    sa.Column("progress_what", sa.String(200), nullable=True),
    _check_in("status", JOB_STATUSES, "ck_job_runs_status"),
    sa.Index("ix_job_runs_job", "job", "started_at"),
    **_TABLE_ARGS,
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("prefix", sa.String(8), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.Column("last_used_at", UTCDateTime(), nullable=True),
    sa.UniqueConstraint("name", name="uq_api_tokens_name"),
    sa.UniqueConstraint("token_hash", name="uq_api_tokens_hash"),
    **_TABLE_ARGS,
)

leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("until", UTCDateTime(), nullable=False),
    **_TABLE_ARGS,
)

api_budget = sa.Table(
    "api_budget",
    metadata,
    sa.Column("connection", sa.String(100), primary_key=True),
    sa.Column("window", sa.String(100), primary_key=True),
    sa.Column("used", sa.BigInteger(), nullable=False),
    sa.Column("limit_value", sa.BigInteger(), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    **_TABLE_ARGS,
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("title", sa.String(500), nullable=False),
    sa.Column("body", sa.Text(), nullable=False),
    sa.Column("opened_at", UTCDateTime(), nullable=False),
    sa.Column("last_sent_at", UTCDateTime(), nullable=True),
    sa.Column("cleared_at", UTCDateTime(), nullable=True),
    sa.Column("count", sa.Integer(), nullable=False),
    **_TABLE_ARGS,
)

flow_pauses = sa.Table(
    "flow_pauses",
    metadata,
    sa.Column("flow", sa.String(100), primary_key=True),
    sa.Column("connection", sa.String(100), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("settings_digest", sa.String(64), nullable=False),
    sa.Column("paused_at", UTCDateTime(), nullable=False),
    sa.Column("probed_at", UTCDateTime(), nullable=True),
    **_TABLE_ARGS,
)

webhook_receivers = sa.Table(
    "webhook_receivers",
    metadata,
    sa.Column("connection", sa.String(100), primary_key=True),
    sa.Column("url_secret", sa.String(64), nullable=False),
    sa.Column("callback_url", sa.String(500), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("refused", sa.BigInteger(), nullable=False),
    sa.Column("refused_at", UTCDateTime(), nullable=True),
    sa.Column("refused_reason", sa.Text(), nullable=True),
    **_TABLE_ARGS,
)

webhook_tokens = sa.Table(
    "webhook_tokens",
    metadata,
    sa.Column("token_digest", sa.String(64), primary_key=True),
    sa.Column("body_digest", sa.String(64), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Index("ix_webhook_tokens_expires", "expires_at"),
    **_TABLE_ARGS,
)

webhook_field_times = sa.Table(
    "webhook_field_times",
    metadata,
    sa.Column("connection", sa.String(100), primary_key=True),
    sa.Column("item_id", sa.String(64), primary_key=True),
    sa.Column("field", sa.String(200), primary_key=True),
    sa.Column("changed_at", UTCDateTime(), nullable=False),
    **_TABLE_ARGS,
)

dashboard_users = sa.Table(
    "dashboard_users",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("role", sa.String(10), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("session_epoch", sa.Integer(), nullable=False),
    sa.Column("failed_logins", sa.Integer(), nullable=False),
    sa.Column("locked_until", UTCDateTime(), nullable=True),
    sa.Column("last_login_at", UTCDateTime(), nullable=True),
    _check_in("role", USER_ROLES, "ck_dashboard_users_role"),
    **_TABLE_ARGS,
)

web_keys = sa.Table(
    "web_keys",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("value", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    **_TABLE_ARGS,
)

# the live crmsync processes: each beats every few seconds; `crmsync status` lists them and drops
# those that stopped beating (what each holds is read from its leases, by the owner prefix)
processes = sa.Table(
    "processes",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer(), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("beat_at", UTCDateTime(), nullable=False),
    sa.Column("details", JSONText(), nullable=True),
    **_TABLE_ARGS,
)
