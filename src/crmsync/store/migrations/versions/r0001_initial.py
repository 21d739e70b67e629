"""Initial tables: the change queue, dead letters, links, shadow, watermarks, sync log, job
runs, API tokens, leases and API budgets.

Revision ID: 0001
Revises:
Create Date: 2024-06-01

Written by hand so that it runs the same on SQLite, PostgreSQL and MySQL/MariaDB. Its types are
spelled out here (not imported from the application) so that the revision never changes.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def _id() -> sa.Column[Any]:
    return sa.Column("id", ID, primary_key=True, autoincrement=True)


def _ts(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, TIMESTAMP, nullable=nullable)


def _check_in(column: str, values: tuple[str, ...], name: str) -> sa.CheckConstraint:
    listed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=name)


def upgrade() -> None:
    op.create_table(
        "changes",
        _id(),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("flow", sa.String(100), nullable=False),
        sa.Column("record_key", sa.String(255), nullable=False),
        sa.Column("operation", sa.String(10), nullable=False),
        sa.Column("payload", JSON_TEXT, nullable=False),
        sa.Column("delivery_id", sa.String(255), nullable=True),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _ts("available_at"),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        _ts("leased_until", nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.Column("last_error", JSON_TEXT, nullable=True),
        _check_in("operation", ("upsert", "delete"), "ck_changes_operation"),
        _check_in("state", ("pending", "leased", "done", "dead"), "ck_changes_state"),
        sa.UniqueConstraint("source", "delivery_id", name="uq_changes_delivery"),
        sa.PrimaryKeyConstraint("id", name="pk_changes"),
        sqlite_autoincrement=True,
        **MYSQL,
    )
    op.create_index("ix_changes_claim", "changes", ["state", "available_at", "id"])
    op.create_index("ix_changes_record", "changes", ["flow", "record_key", "id"])

    op.create_table(
        "dead_letters",
        _id(),
        sa.Column("change_ids", JSON_TEXT, nullable=False),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("flow", sa.String(100), nullable=False),
        sa.Column("record_key", sa.String(255), nullable=False),
        sa.Column("operation", sa.String(10), nullable=False),
        sa.Column("payload", JSON_TEXT, nullable=False),
        sa.Column("error", JSON_TEXT, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _ts("created_at"),
        _ts("replay_requested_at", nullable=True),
        _ts("discarded_at", nullable=True),
        _check_in("operation", ("upsert", "delete"), "ck_dead_letters_operation"),
        sa.PrimaryKeyConstraint("id", name="pk_dead_letters"),
        **MYSQL,
    )
    op.create_index("ix_dead_letters_flow", "dead_letters", ["flow", "id"])

    op.create_table(
        "links",
        _id(),
        sa.Column("flow", sa.String(100), nullable=False),
        sa.Column("source_system", sa.String(100), nullable=False),
        sa.Column("source_key", sa.String(255), nullable=False),
        sa.Column("target_system", sa.String(100), nullable=False),
        sa.Column("target_id", sa.String(255), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.UniqueConstraint("flow", "source_system", "source_key", name="uq_links_source"),
        sa.UniqueConstraint("flow", "target_system", "target_id", name="uq_links_target"),
        sa.PrimaryKeyConstraint("id", name="pk_links"),
        **MYSQL,
    )

    op.create_table(
        "shadow",
        sa.Column("system", sa.String(100), nullable=False),
        sa.Column("object_name", sa.String(100), nullable=False),
        sa.Column("record_id", sa.String(255), nullable=False),
        sa.Column("fields", JSON_TEXT, nullable=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("system", "object_name", "record_id", name="pk_shadow"),
        **MYSQL,
    )

    op.create_table(
        "watermarks",
        sa.Column("connection", sa.String(100), nullable=False),
        sa.Column("object_name", sa.String(100), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("connection", "object_name", name="pk_watermarks"),
        **MYSQL,
    )

    op.create_table(
        "sync_log",
        _id(),
        _ts("at"),
        sa.Column("flow", sa.String(100), nullable=False),
        sa.Column("record_key", sa.String(255), nullable=False),
        sa.Column("operation", sa.String(20), nullable=True),
        sa.Column("source", sa.String(100), nullable=True),
        sa.Column("target", sa.String(100), nullable=True),
        sa.Column("outcome", sa.String(10), nullable=False),
        sa.Column("target_id", sa.String(255), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("change_ids", JSON_TEXT, nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        _check_in(
            "outcome",
            ("applied", "retry", "dead", "refused", "skipped", "conflict", "received"),
            "ck_sync_log_outcome",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_sync_log"),
        **MYSQL,
    )
    op.create_index("ix_sync_log_record", "sync_log", ["flow", "record_key", "id"])
    op.create_index("ix_sync_log_at", "sync_log", ["at"])

    op.create_table(
        "job_runs",
        _id(),
        sa.Column("job", sa.String(100), nullable=False),
        _ts("started_at"),
        _ts("finished_at", nullable=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        _check_in("status", ("running", "succeeded", "failed"), "ck_job_runs_status"),
        sa.PrimaryKeyConstraint("id", name="pk_job_runs"),
        **MYSQL,
    )
    op.create_index("ix_job_runs_job", "job_runs", ["job", "started_at"])

    op.create_table(
        "api_tokens",
        _id(),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(8), nullable=False),
        _ts("created_at"),
        _ts("revoked_at", nullable=True),
        _ts("last_used_at", nullable=True),
        sa.UniqueConstraint("name", name="uq_api_tokens_name"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_hash"),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        **MYSQL,
    )

    op.create_table(
        "leases",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        _ts("until"),
        sa.PrimaryKeyConstraint("name", name="pk_leases"),
        **MYSQL,
    )

    op.create_table(
        "api_budget",
        sa.Column("connection", sa.String(100), nullable=False),
        sa.Column("window", sa.String(100), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("limit_value", sa.BigInteger(), nullable=True),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("connection", "window", name="pk_api_budget"),
        **MYSQL,
    )


def downgrade() -> None:
    for table in (
        "api_budget",
        "leases",
        "api_tokens",
        "job_runs",
        "sync_log",
        "watermarks",
        "shadow",
        "links",
        "dead_letters",
        "changes",
    ):
        op.drop_table(table)
