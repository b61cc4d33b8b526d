"""event catalogue, expiring seat holds, refund requests

Revision ID: 0010_event_catalogue
Revises: 0008_mpesa_trust
Create Date: 2026-12-01 02:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_event_catalogue"
down_revision: str | None = "0008_mpesa_trust"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ticket_events",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("venue", sa.String(length=200), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("sales_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sales_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("nft_name", sa.String(length=32), nullable=True),
        sa.Column("nft_symbol", sa.String(length=10), nullable=True),
        sa.Column("nft_metadata_base_uri", sa.String(length=512), nullable=True),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_events")),
    )
    with op.batch_alter_table("ticket_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ticket_events_tenant"), ["tenant"], unique=False)

    op.create_table(
        "ticket_event_sections",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("price_minor", sa.BigInteger(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("seats", sa.JSON(), nullable=True),
        sa.Column("lock_version", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "capacity >= 0", name=op.f("ck_ticket_event_sections_capacity_not_negative")
        ),
        sa.CheckConstraint("price_minor > 0", name=op.f("ck_ticket_event_sections_price_positive")),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["ticket_events.id"],
            name=op.f("fk_ticket_event_sections_event_id_ticket_events"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_event_sections")),
        sa.UniqueConstraint(
            "event_id", "code", name=op.f("uq_ticket_event_sections_event_id_code")
        ),
    )
    with op.batch_alter_table("ticket_event_sections", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ticket_event_sections_event_id"), ["event_id"], unique=False
        )

    with op.batch_alter_table("seat_holds", schema=None) as batch_op:
        batch_op.alter_column("seat", existing_type=sa.String(length=64), nullable=True)
        batch_op.add_column(sa.Column("section_id", sa.String(length=36), nullable=True))
        batch_op.add_column(
            sa.Column("status", sa.String(length=16), server_default="held", nullable=False)
        )
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_seat_holds_section_id"), ["section_id"], unique=False)

    with op.batch_alter_table("ticket_purchases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("section", sa.String(length=64), nullable=True))

    op.create_table(
        "ticket_refund_requests",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("purchase_id", sa.String(length=36), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("requested_by", sa.String(length=255), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.String(length=255), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("refund_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["purchase_id"],
            ["ticket_purchases.id"],
            name=op.f("fk_ticket_refund_requests_purchase_id_ticket_purchases"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_refund_requests")),
    )
    with op.batch_alter_table("ticket_refund_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ticket_refund_requests_purchase_id"), ["purchase_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_ticket_refund_requests_status"), ["status"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_ticket_refund_requests_tenant"), ["tenant"], unique=False
        )


def downgrade() -> None:
    op.drop_table("ticket_refund_requests")
    with op.batch_alter_table("ticket_purchases", schema=None) as batch_op:
        batch_op.drop_column("section")
    op.execute("DELETE FROM seat_holds WHERE seat IS NULL")
    with op.batch_alter_table("seat_holds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_seat_holds_section_id"))
        batch_op.drop_column("expires_at")
        batch_op.drop_column("status")
        batch_op.drop_column("section_id")
        batch_op.alter_column("seat", existing_type=sa.String(length=64), nullable=False)
    op.drop_table("ticket_event_sections")
    op.drop_table("ticket_events")
