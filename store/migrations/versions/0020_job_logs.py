"""Job logs: lines the activities write about the job they work for (the job's timeline).

Revision ID: 0020_job_logs
Revises: 0019_circuit_breakers
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_job_logs"
down_revision = "0019_circuit_breakers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_logs",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("workflow_id", sa.String(length=255), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("activity", sa.String(length=128), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_logs")),
    )
    op.create_index("ix_job_logs_workflow", "job_logs", ["workflow_id", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_job_logs_workflow", table_name="job_logs")
    op.drop_table("job_logs")
