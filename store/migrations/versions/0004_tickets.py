"""tickets

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 04:12:36.365123
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.String(length=160), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notifications_status"), ["status"], unique=False)

    op.create_table(
        "seat_holds",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("seat", sa.String(length=64), nullable=False),
        sa.Column("purchase_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_seat_holds")),
        sa.UniqueConstraint("purchase_id", name=op.f("uq_seat_holds_purchase_id")),
        sa.UniqueConstraint(
            "tenant", "event_id", "seat", name=op.f("uq_seat_holds_tenant_event_id_seat")
        ),
    )
    op.create_table(
        "stripe_events",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("object_id", sa.String(length=64), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stripe_events")),
    )
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.String(length=128), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhook_endpoints_tenant"), ["tenant"], unique=False)

    op.create_table(
        "ticket_purchases",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("seat", sa.String(length=64), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("buyer_email", sa.String(length=320), nullable=False),
        sa.Column("buyer_wallet", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("workflow_id", sa.String(length=128), nullable=False),
        sa.Column("request_key", sa.String(length=255), nullable=True),
        sa.Column("payment_intent_id", sa.String(length=64), nullable=True),
        sa.Column("amount_captured", sa.BigInteger(), nullable=False),
        sa.Column("amount_refunded", sa.BigInteger(), nullable=False),
        sa.Column("mint_address", sa.String(length=64), nullable=True),
        sa.Column("token_account", sa.String(length=64), nullable=True),
        sa.Column("owner_wallet", sa.String(length=64), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "amount_refunded >= 0 AND amount_refunded <= amount_captured",
            name=op.f("ck_ticket_purchases_refund_within_capture"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_ticket_purchases_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_purchases")),
        sa.UniqueConstraint(
            "payment_intent_id", name=op.f("uq_ticket_purchases_payment_intent_id")
        ),
        sa.UniqueConstraint("workflow_id", name=op.f("uq_ticket_purchases_workflow_id")),
    )
    with op.batch_alter_table("ticket_purchases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ticket_purchases_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_ticket_purchases_tenant"), ["tenant"], unique=False)
        batch_op.create_index(batch_op.f("ix_ticket_purchases_user_id"), ["user_id"], unique=False)

    op.create_table(
        "nft_transfers",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("purchase_id", sa.String(length=36), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("from_wallet", sa.String(length=64), nullable=False),
        sa.Column("to_wallet", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("workflow_id", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["purchase_id"],
            ["ticket_purchases.id"],
            name=op.f("fk_nft_transfers_purchase_id_ticket_purchases"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nft_transfers")),
        sa.UniqueConstraint("workflow_id", name=op.f("uq_nft_transfers_workflow_id")),
    )
    with op.batch_alter_table("nft_transfers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_nft_transfers_purchase_id"), ["purchase_id"], unique=False
        )

    op.create_table(
        "ticket_refunds",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("purchase_id", sa.String(length=36), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("stripe_refund_id", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("workflow_id", sa.String(length=128), nullable=False),
        sa.Column("requested_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["purchase_id"],
            ["ticket_purchases.id"],
            name=op.f("fk_ticket_refunds_purchase_id_ticket_purchases"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_refunds")),
        sa.UniqueConstraint("stripe_refund_id", name=op.f("uq_ticket_refunds_stripe_refund_id")),
        sa.UniqueConstraint("workflow_id", name=op.f("uq_ticket_refunds_workflow_id")),
    )
    with op.batch_alter_table("ticket_refunds", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ticket_refunds_purchase_id"), ["purchase_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("ticket_refunds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_refunds_purchase_id"))

    op.drop_table("ticket_refunds")
    with op.batch_alter_table("nft_transfers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_nft_transfers_purchase_id"))

    op.drop_table("nft_transfers")
    with op.batch_alter_table("ticket_purchases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_purchases_user_id"))
        batch_op.drop_index(batch_op.f("ix_ticket_purchases_tenant"))
        batch_op.drop_index(batch_op.f("ix_ticket_purchases_status"))

    op.drop_table("ticket_purchases")
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_endpoints_tenant"))

    op.drop_table("webhook_endpoints")
    op.drop_table("stripe_events")
    op.drop_table("seat_holds")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notifications_status"))

    op.drop_table("notifications")
