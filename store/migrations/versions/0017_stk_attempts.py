"""STK push attempts (written before the push leaves) and unmatched M-Pesa payments.

Revision ID: 0017_stk_attempts
Revises: 0016_abuse_counters
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_stk_attempts"
down_revision = "0016_abuse_counters"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mpesa_push_attempts",
        sa.Column("deposit_id", sa.String(length=36), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(length=16), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("checkout_request_id", sa.String(length=64), nullable=True),
        sa.Column("merchant_request_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["deposit_id"],
            ["mpesa_deposits.id"],
            name=op.f("fk_mpesa_push_attempts_deposit_id_mpesa_deposits"),
        ),
        sa.PrimaryKeyConstraint("deposit_id", "attempt", name=op.f("pk_mpesa_push_attempts")),
    )
    op.create_index(
        op.f("ix_mpesa_push_attempts_checkout_request_id"),
        "mpesa_push_attempts",
        ["checkout_request_id"],
        unique=False,
    )
    op.create_table(
        "mpesa_unmatched_payments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("checkout_request_id", sa.String(length=64), nullable=False),
        sa.Column("merchant_request_id", sa.String(length=64), nullable=True),
        sa.Column("receipt", sa.String(length=32), nullable=True),
        sa.Column("phone", sa.String(length=16), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("tenant", sa.String(length=64), nullable=True),
        sa.Column("deposit_id", sa.String(length=36), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=255), nullable=True),
        sa.Column("resolution_reference", sa.String(length=255), nullable=True),
        sa.Column("ledger_entry_id", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["ledger_entry_id"],
            ["ledger_entries.id"],
            name=op.f("fk_mpesa_unmatched_payments_ledger_entry_id_ledger_entries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mpesa_unmatched_payments")),
        sa.UniqueConstraint(
            "checkout_request_id", name=op.f("uq_mpesa_unmatched_payments_checkout_request_id")
        ),
    )
    op.create_index(
        op.f("ix_mpesa_unmatched_payments_status"),
        "mpesa_unmatched_payments",
        ["status"],
        unique=False,
    )
    op.create_index(
        op.f("ix_mpesa_unmatched_payments_tenant"),
        "mpesa_unmatched_payments",
        ["tenant"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_mpesa_unmatched_payments_tenant"), table_name="mpesa_unmatched_payments")
    op.drop_index(op.f("ix_mpesa_unmatched_payments_status"), table_name="mpesa_unmatched_payments")
    op.drop_table("mpesa_unmatched_payments")
    op.drop_index(
        op.f("ix_mpesa_push_attempts_checkout_request_id"), table_name="mpesa_push_attempts"
    )
    op.drop_table("mpesa_push_attempts")
