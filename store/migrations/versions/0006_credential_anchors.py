"""credential anchors

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 13:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "credential_anchors",
        sa.Column("credential_key", sa.String(length=66), nullable=False),
        sa.Column("credential_id", sa.String(length=128), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("requested_by", sa.String(length=255), nullable=False),
        sa.Column("data_hash", sa.String(length=66), nullable=False),
        sa.Column("ipfs_cid", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("workflow_id", sa.String(length=200), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("batch_root", sa.String(length=66), nullable=True),
        sa.Column("proof", sa.Text(), nullable=True),
        sa.Column("tx_hash", sa.String(length=66), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("credential_key", name=op.f("pk_credential_anchors")),
    )
    op.create_index(
        op.f("ix_credential_anchors_status"), "credential_anchors", ["status"], unique=False
    )
    op.create_index(
        op.f("ix_credential_anchors_batch_root"),
        "credential_anchors",
        ["batch_root"],
        unique=False,
    )
    op.create_index(
        op.f("ix_credential_anchors_tenant"), "credential_anchors", ["tenant"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_credential_anchors_tenant"), table_name="credential_anchors")
    op.drop_index(op.f("ix_credential_anchors_batch_root"), table_name="credential_anchors")
    op.drop_index(op.f("ix_credential_anchors_status"), table_name="credential_anchors")
    op.drop_table("credential_anchors")
