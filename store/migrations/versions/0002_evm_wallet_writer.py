"""evm wallet writer and the m-pesa deposit's on-chain leg

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 02:58:00.630894
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "evm_wallets",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("address", sa.String(length=42), nullable=False),
        sa.Column("next_nonce", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evm_wallets")),
        sa.UniqueConstraint("chain_id", "address", name=op.f("uq_evm_wallets_chain_id_address")),
    )
    op.create_table(
        "evm_transactions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("wallet_id", sa.String(length=36), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("purpose", sa.String(length=64), nullable=True),
        sa.Column("nonce", sa.BigInteger(), nullable=False),
        sa.Column("to_address", sa.String(length=42), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("value", sa.String(length=80), nullable=False),
        sa.Column("gas_limit", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("current_hash", sa.String(length=66), nullable=False),
        sa.Column("mined_hash", sa.String(length=66), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("block_hash", sa.String(length=66), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["wallet_id"],
            ["evm_wallets.id"],
            name=op.f("fk_evm_transactions_wallet_id_evm_wallets"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evm_transactions")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_evm_transactions_idempotency_key")),
        sa.UniqueConstraint("wallet_id", "nonce", name=op.f("uq_evm_transactions_wallet_id_nonce")),
    )
    with op.batch_alter_table("evm_transactions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_evm_transactions_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_evm_transactions_wallet_id"), ["wallet_id"], unique=False
        )

    op.create_table(
        "evm_tx_attempts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("transaction_id", sa.String(length=36), nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("max_fee_per_gas", sa.String(length=80), nullable=False),
        sa.Column("max_priority_fee_per_gas", sa.String(length=80), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("broadcast_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["evm_transactions.id"],
            name=op.f("fk_evm_tx_attempts_transaction_id_evm_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evm_tx_attempts")),
        sa.UniqueConstraint("tx_hash", name=op.f("uq_evm_tx_attempts_tx_hash")),
    )
    with op.batch_alter_table("evm_tx_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_evm_tx_attempts_transaction_id"), ["transaction_id"], unique=False
        )

    with op.batch_alter_table("mpesa_deposits", schema=None) as batch_op:
        batch_op.add_column(sa.Column("wallet_address", sa.String(length=42), nullable=True))
        batch_op.add_column(sa.Column("usdc_minor", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("fx_kes_per_usdc", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("usdc_tx_hash", sa.String(length=66), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mpesa_deposits", schema=None) as batch_op:
        batch_op.drop_column("usdc_tx_hash")
        batch_op.drop_column("fx_kes_per_usdc")
        batch_op.drop_column("usdc_minor")
        batch_op.drop_column("wallet_address")

    with op.batch_alter_table("evm_tx_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_evm_tx_attempts_transaction_id"))

    op.drop_table("evm_tx_attempts")
    with op.batch_alter_table("evm_transactions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_evm_transactions_wallet_id"))
        batch_op.drop_index(batch_op.f("ix_evm_transactions_status"))

    op.drop_table("evm_transactions")
    op.drop_table("evm_wallets")
