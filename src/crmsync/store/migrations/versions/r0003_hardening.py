"""Hardening: flow pauses (a flow whose connection needs a person stops claiming work until the
connection's settings change or a probe finds it working again).

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


def upgrade() -> None:
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


def downgrade() -> None:
    op.drop_table("flow_pauses")
