"""Circuit breakers per provider, and fleet-wide concurrency slots (leases).

Revision ID: 0019_circuit_breakers
Revises: 0017_stk_attempts
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019_circuit_breakers"
down_revision = "0017_stk_attempts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "circuit_breakers",
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_calls", sa.Integer(), nullable=False),
        sa.Column("window_failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_probe_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "provider", name=op.f("pk_circuit_breakers")),
    )
    op.create_table(
        "concurrency_slots",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", "slot", name=op.f("pk_concurrency_slots")),
    )


def downgrade() -> None:
    op.drop_table("concurrency_slots")
    op.drop_table("circuit_breakers")
