"""Abuse counters: operations started per minute by a phone, user or tenant.

Revision ID: 0016_abuse_counters
Revises: 0013_alert_tenant
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_abuse_counters"
down_revision = "0013_alert_tenant"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "abuse_counters",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", "window_start", name=op.f("pk_abuse_counters")),
    )


def downgrade() -> None:
    op.drop_table("abuse_counters")
