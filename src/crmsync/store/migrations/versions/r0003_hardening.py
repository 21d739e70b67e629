"""Hardening: flow pauses (a flow whose connection needs a person stops claiming work until the
connection's settings change or a probe finds it working again); webhook receivers (the secret in a
connection's callback URL, refused deliveries), the signed tokens already used (single use) and the
vendor's change time last received per field (late deliveries never roll a value back); the event
metadata a change carries (``changes.meta``).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05

Written by hand, like 0001, with its types spelled out so that the revision never changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
JSON_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def upgrade() -> None:
    # what a change's source said of the event behind it (when, who, action, delivery id)
    op.add_column("changes", sa.Column("meta", JSON_TEXT, nullable=True))
    op.create_table(
        "flow_pauses",
        sa.Column("flow", sa.String(100), nullable=False),
        sa.Column("connection", sa.String(100), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("settings_digest", sa.String(64), nullable=False),
        sa.Column("paused_at", TIMESTAMP, nullable=False),
        sa.Column("probed_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("flow", name="pk_flow_pauses"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )

    op.create_table(
        "webhook_receivers",
        sa.Column("connection", sa.String(100), nullable=False),
        sa.Column("url_secret", sa.String(64), nullable=False),
        sa.Column("callback_url", sa.String(500), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("refused", sa.BigInteger(), nullable=False),
        sa.Column("refused_at", TIMESTAMP, nullable=True),
        sa.Column("refused_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("connection", name="pk_webhook_receivers"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    op.create_table(
        "webhook_tokens",
        sa.Column("token_digest", sa.String(64), nullable=False),
        sa.Column("body_digest", sa.String(64), nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("token_digest", name="pk_webhook_tokens"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_webhook_tokens_expires", "webhook_tokens", ["expires_at"])
    op.create_table(
        "webhook_field_times",
        sa.Column("connection", sa.String(100), nullable=False),
        sa.Column("item_id", sa.String(64), nullable=False),
        sa.Column("field", sa.String(200), nullable=False),
        sa.Column("changed_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("connection", "item_id", "field", name="pk_webhook_field_times"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )

    # the dashboard: its users (argon2 hashes, a role, a counter that ends their sessions, a lockout
    # after failed logins), the key its session cookies are signed with (shared by every replica),
    # a dead letter's discard reason, and a running job's progress
    op.add_column("dead_letters", sa.Column("discard_reason", sa.Text(), nullable=True))
    op.add_column("job_runs", sa.Column("progress_done", sa.BigInteger(), nullable=True))
    op.add_column("job_runs", sa.Column("progress_total", sa.BigInteger(), nullable=True))
    op.add_column("job_runs", sa.Column("progress_what", sa.String(200), nullable=True))
    op.create_table(
        "dashboard_users",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("role", sa.String(10), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("session_epoch", sa.Integer(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", TIMESTAMP, nullable=True),
        sa.Column("last_login_at", TIMESTAMP, nullable=True),
        sa.CheckConstraint("role IN ('viewer', 'admin')", name="ck_dashboard_users_role"),
        sa.PrimaryKeyConstraint("name", name="pk_dashboard_users"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    op.create_table(
        "web_keys",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("value", sa.String(200), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_web_keys"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )

    # the live processes and their heartbeats (`crmsync status`)
    op.create_table(
        "processes",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("beat_at", TIMESTAMP, nullable=False),
        sa.Column("details", JSON_TEXT, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_processes"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )


def downgrade() -> None:
    op.drop_table("processes")
    op.drop_table("web_keys")
    op.drop_table("dashboard_users")
    with op.batch_alter_table("job_runs") as batch:
        batch.drop_column("progress_what")
        batch.drop_column("progress_total")
        batch.drop_column("progress_done")
    with op.batch_alter_table("dead_letters") as batch:
        batch.drop_column("discard_reason")
    with op.batch_alter_table("changes") as batch:
        batch.drop_column("meta")
    op.drop_table("webhook_field_times")
    op.drop_index("ix_webhook_tokens_expires", table_name="webhook_tokens")
    op.drop_table("webhook_tokens")
    op.drop_table("webhook_receivers")
    op.drop_table("flow_pauses")
