"""verification jobs

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "verification_jobs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("registry_address", sa.String(length=42), nullable=False),
        sa.Column("manifest_uri", sa.String(length=512), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=True),
        sa.Column("file_size", sa.BigInteger(), nullable=False),
        sa.Column("content_hash", sa.String(length=66), nullable=True),
        sa.Column("workflow_id", sa.String(length=200), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verification_jobs")),
    )
    op.create_index(
        op.f("ix_verification_jobs_status"), "verification_jobs", ["status"], unique=False
    )
    op.create_index(
        op.f("ix_verification_jobs_created_at"), "verification_jobs", ["created_at"], unique=False
    )
    op.create_index(
        "ix_verification_jobs_owner",
        "verification_jobs",
        ["tenant", "owner", "status"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_verification_jobs_owner", table_name="verification_jobs")
    op.drop_index(op.f("ix_verification_jobs_created_at"), table_name="verification_jobs")
    op.drop_index(op.f("ix_verification_jobs_status"), table_name="verification_jobs")
    op.drop_table("verification_jobs")
