"""batched payouts: the deposit's own Transfer log in its (possibly shared) USDC transaction

Revision ID: 0023_payout_batches
Revises: 0022_webhook_subscriptions
Create Date: 2026-12-01 06:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023_payout_batches"
down_revision: str | None = "0022_webhook_subscriptions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("mpesa_deposits", schema=None) as batch_op:
        batch_op.add_column(sa.Column("usdc_log_index", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mpesa_deposits", schema=None) as batch_op:
        batch_op.drop_column("usdc_log_index")
