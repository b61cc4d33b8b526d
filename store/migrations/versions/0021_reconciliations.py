"""Reconciliations: Settle's rows against the providers' own records, and the mismatches found.

Revision ID: 0021_reconciliations
Revises: 0020_job_logs
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021_reconciliations"
down_revision = "0020_job_logs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reconciliations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workflow_id", sa.String(length=200), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_by", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("clean", sa.Boolean(), nullable=True),
        sa.Column("checked", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliations")),
        sa.UniqueConstraint("workflow_id", name=op.f("uq_reconciliations_workflow_id")),
    )
    op.create_index(op.f("ix_reconciliations_status"), "reconciliations", ["status"], unique=False)
    op.create_index(
        op.f("ix_reconciliations_created_at"), "reconciliations", ["created_at"], unique=False
    )
    op.create_table(
        "reconciliation_items",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("reconciliation_id", sa.String(length=36), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("provider_ref", sa.String(length=200), nullable=False),
        sa.Column("provider_amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=8), nullable=True),
        sa.Column("settle_ref", sa.String(length=200), nullable=False),
        sa.Column("settle_amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("alert_id", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["reconciliation_id"],
            ["reconciliations.id"],
            name=op.f("fk_reconciliation_items_reconciliation_id_reconciliations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_items")),
    )
    op.create_index(
        op.f("ix_reconciliation_items_reconciliation_id"),
        "reconciliation_items",
        ["reconciliation_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_reconciliation_items_reconciliation_id"), table_name="reconciliation_items"
    )
    op.drop_table("reconciliation_items")
    op.drop_index(op.f("ix_reconciliations_created_at"), table_name="reconciliations")
    op.drop_index(op.f("ix_reconciliations_status"), table_name="reconciliations")
    op.drop_table("reconciliations")
