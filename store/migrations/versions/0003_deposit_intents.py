"""deposit intents, transfers, chain checkpoints

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 03:16:13.929006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "chain_checkpoints",
        sa.Column("chain", sa.String(length=32), nullable=False),
        sa.Column("last_scanned_block", sa.BigInteger(), nullable=True),
        sa.Column("scanned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_hd_index", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("chain", name=op.f("pk_chain_checkpoints")),
    )
    op.create_table(
        "deposit_intents",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("chain", sa.String(length=32), nullable=False),
        sa.Column("address", sa.String(length=42), nullable=False),
        sa.Column("hd_index", sa.BigInteger(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("received_minor", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("workflow_id", sa.String(length=128), nullable=False),
        sa.Column("late_transfer_seen", sa.Boolean(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_deposit_intents_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deposit_intents")),
        sa.UniqueConstraint("chain", "address", name=op.f("uq_deposit_intents_chain_address")),
        sa.UniqueConstraint("chain", "hd_index", name=op.f("uq_deposit_intents_chain_hd_index")),
        sa.UniqueConstraint("workflow_id", name=op.f("uq_deposit_intents_workflow_id")),
    )
    with op.batch_alter_table("deposit_intents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deposit_intents_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_deposit_intents_tenant"), ["tenant"], unique=False)
        batch_op.create_index(batch_op.f("ix_deposit_intents_user_id"), ["user_id"], unique=False)

    op.create_table(
        "deposit_transfers",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("intent_id", sa.String(length=36), nullable=False),
        sa.Column("chain", sa.String(length=32), nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", sa.String(length=66), nullable=False),
        sa.Column("from_address", sa.String(length=42), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("ledger_entry_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["intent_id"],
            ["deposit_intents.id"],
            name=op.f("fk_deposit_transfers_intent_id_deposit_intents"),
        ),
        sa.ForeignKeyConstraint(
            ["ledger_entry_id"],
            ["ledger_entries.id"],
            name=op.f("fk_deposit_transfers_ledger_entry_id_ledger_entries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deposit_transfers")),
        sa.UniqueConstraint(
            "chain",
            "tx_hash",
            "log_index",
            "block_hash",
            name=op.f("uq_deposit_transfers_chain_tx_hash_log_index_block_hash"),
        ),
    )
    with op.batch_alter_table("deposit_transfers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_deposit_transfers_intent_id"), ["intent_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("deposit_transfers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deposit_transfers_intent_id"))

    op.drop_table("deposit_transfers")
    with op.batch_alter_table("deposit_intents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deposit_intents_user_id"))
        batch_op.drop_index(batch_op.f("ix_deposit_intents_tenant"))
        batch_op.drop_index(batch_op.f("ix_deposit_intents_status"))

    op.drop_table("deposit_intents")
    op.drop_table("chain_checkpoints")
