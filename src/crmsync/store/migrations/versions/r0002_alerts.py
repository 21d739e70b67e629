"""Alerts: one row per problem a person was (or is to be) told about, so that several processes
alert once between them.

Revision ID: 0002
Revises: 0001
Create Date: 2024-07-01

Written by hand, like 0001, with its types spelled out so that the revision never changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("opened_at", TIMESTAMP, nullable=False),
        sa.Column("last_sent_at", TIMESTAMP, nullable=True),
        sa.Column("cleared_at", TIMESTAMP, nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_alerts"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )


def downgrade() -> None:
    op.drop_table("alerts")
