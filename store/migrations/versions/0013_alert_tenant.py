"""Alerts carry the tenant they concern (none: the platform's own).

Revision ID: 0013_alert_tenant
Revises: 0010_event_catalogue
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_alert_tenant"
down_revision = "0010_event_catalogue"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("alerts", sa.Column("tenant", sa.String(length=64), nullable=True))
    op.create_index(op.f("ix_alerts_tenant"), "alerts", ["tenant"])


def downgrade() -> None:
    op.drop_index(op.f("ix_alerts_tenant"), table_name="alerts")
    op.drop_column("alerts", "tenant")
