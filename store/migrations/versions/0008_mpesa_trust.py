"""M-Pesa deposits keep the FX quote given at initiation

Revision ID: 0008_mpesa_trust
Revises: 0007
Create Date: 2026-12-01 02:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_mpesa_trust"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("mpesa_deposits") as batch:
        batch.add_column(sa.Column("fx_quote_kes_per_usdc", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("fx_quote_usdc_minor", sa.BigInteger(), nullable=True))
        batch.add_column(
            sa.Column("fx_quote_expires_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("mpesa_deposits") as batch:
        batch.drop_column("fx_quote_expires_at")
        batch.drop_column("fx_quote_usdc_minor")
        batch.drop_column("fx_quote_kes_per_usdc")
