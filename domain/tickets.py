"""Ticket purchases, refunds and NFT transfers: workflow inputs, states, activity payloads.

Activities: ``stripe.pay``, ``stripe.retrieve``, ``stripe.cancel``, ``stripe.refund`` (queue
``stripe``); ``notify.email``, ``notify.webhook`` (queue ``notify``); ``tickets.*`` (queue ``db``);
``solana.*`` (queue ``solana``, see ``domain/nft.py``).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from domain.queues import Routed


class PurchaseStatus(StrEnum):
    PAYING = "paying"
    REQUIRES_ACTION = "requires_action"  # the buyer must authenticate (3-D Secure)
    PAID = "paid"
    MINTING = "minting"
    COMPLETED = "completed"  # paid, minted, notified
    PAYMENT_FAILED = "payment_failed"  # declined, or authentication failed or timed out
    REFUNDED = "refunded"  # paid back in full (the mint failed, the place was lost, or a refund)
    VOIDED = "voided"  # partly refunded with ``void_ticket``: the ticket is no longer valid
    CANCELLED = "cancelled"  # cancelled by its owner or an operator; what was paid is refunded
    NEEDS_ATTENTION = "needs_attention"


FINAL_PURCHASE = frozenset(
    {
        PurchaseStatus.COMPLETED,
        PurchaseStatus.PAYMENT_FAILED,
        PurchaseStatus.REFUNDED,
        PurchaseStatus.VOIDED,
        PurchaseStatus.CANCELLED,
    }
)
#: the ticket is void: its NFT is retired, its place back on sale
VOID_PURCHASE = frozenset(
    {PurchaseStatus.REFUNDED, PurchaseStatus.VOIDED, PurchaseStatus.CANCELLED}
)


class TicketConfig(BaseModel):
    stripe_timeout_seconds: float = 40.0
    action_timeout_seconds: float = 900.0
    mint_max_attempts: int = 5
    solana_timeout_seconds: float = 90.0
    full_refund_action: str = "freeze"  # none | freeze | burn
    admin_emails: list[str] = Field(default_factory=list)


class TicketPurchaseInput(Routed):
    purchase_id: str
    tenant: str
    user_id: str
    subject: str
    event_id: str
    seat: str
    amount_minor: int = Field(gt=0)
    currency: str
    payment_method: str
    buyer_email: str
    buyer_wallet: str
    metadata_uri: str
    symbol: str = "TIX"
    #: the NFT's name, from the catalogue (older purchases: "Ticket <event id>")
    nft_name: str | None = None
    config: TicketConfig = Field(default_factory=TicketConfig)


class TicketPurchaseState(BaseModel):
    purchase_id: str
    status: PurchaseStatus = PurchaseStatus.PAYING
    payment_intent: str | None = None
    mint: str | None = None
    token_account: str | None = None
    failure_reason: str | None = None
    refund_id: str | None = None
    emails_sent: int = 0
    webhooks_sent: int = 0
    error: str | None = None
    updated_at: datetime | None = None


# --- Stripe activities --------------------------------------------------------------------------


class PayInput(BaseModel):
    idempotency_key: str
    amount_minor: int
    currency: str
    payment_method: str
    customer_email: str
    metadata: dict[str, str]


class PayResult(BaseModel):
    payment_intent: str
    status: str
    amount_received: int
    failure_code: str | None = None
    failure_message: str | None = None


class RetrievePaymentInput(BaseModel):
    payment_intent: str


class CancelPaymentInput(BaseModel):
    payment_intent: str
    idempotency_key: str


class StripeRefundInput(BaseModel):
    idempotency_key: str
    payment_intent: str
    #: None: all that is left
    amount_minor: int | None
    metadata: dict[str, str]


class RetrieveRefundInput(BaseModel):
    refund_id: str


class StripeRefundResult(BaseModel):
    refund_id: str
    amount_minor: int
    status: str


class StripeEventSignal(BaseModel):
    """A verified Stripe webhook event, forwarded by the API to its workflow."""

    event_id: str
    type: str
    payment_intent: str | None = None
    status: str | None = None
    failure_message: str | None = None
    #: refund events: Stripe's refund id
    refund: str | None = None


# --- notifications ------------------------------------------------------------------------------


class EmailInput(BaseModel):
    message_id: str
    to: str
    template: str
    context: dict[str, str]


class WebhookInput(BaseModel):
    """Deliver one event to one tenant's endpoints (each gets its own message id)."""

    message_id: str
    tenant: str
    event_type: str
    data: dict[str, str | int | None]


class WebhookResult(BaseModel):
    delivered: int
    skipped: int = 0


class RecordOutcomeInput(BaseModel):
    message_id: str
    channel: str
    target: str
    kind: str
    status: str
    error: str | None = None


# --- database steps -----------------------------------------------------------------------------


class PaymentCapturedInput(BaseModel):
    purchase_id: str
    payment_intent: str
    amount_minor: int
    currency: str


class PaymentCapturedResult(BaseModel):
    #: False: the hold expired and another buyer took the place (refund the payment)
    place_kept: bool = True


class PurchaseUpdate(BaseModel):
    purchase_id: str
    status: PurchaseStatus
    failure_reason: str | None = None
    payment_intent: str | None = None
    mint: str | None = None
    token_account: str | None = None
    release_seat: bool = False


class ReserveRefundInput(BaseModel):
    refund_id: str
    purchase_id: str
    #: None: everything not refunded yet
    amount_minor: int | None
    requested_by: str
    reason: str | None = None
    workflow_id: str


class ReservedRefund(BaseModel):
    refund_id: str
    amount_minor: int
    payment_intent: str
    currency: str
    #: True when this refund brings the purchase to fully refunded
    full: bool
    already_done: bool = False
    stripe_refund_id: str | None = None


class RefundSettledInput(BaseModel):
    refund_id: str
    stripe_refund_id: str | None
    succeeded: bool
    failure_reason: str | None = None
    #: the refund voids the ticket even when partial
    void_ticket: bool = False


class MintOutcomeInput(BaseModel):
    purchase_id: str


class MintOutcome(BaseModel):
    status: str
    mint: str | None


class TransferRecordInput(BaseModel):
    transfer_id: str
    status: str
    signature: str | None = None
    failure_reason: str | None = None
    new_owner: str | None = None


# --- refund and transfer workflows --------------------------------------------------------------


class RefundInput(Routed):
    refund_id: str
    purchase_id: str
    tenant: str
    amount_minor: int | None
    requested_by: str
    reason: str | None = None
    buyer_email: str
    event_id: str
    seat: str
    mint: str | None
    config: TicketConfig = Field(default_factory=TicketConfig)
    #: retire the ticket (freeze or burn its NFT) even when the refund is partial
    void_ticket: bool = False


class RefundState(BaseModel):
    refund_id: str
    #: pending | waiting_for_stripe | succeeded | refused | failed | cancelled
    status: str = "pending"
    amount_minor: int | None = None
    stripe_refund_id: str | None = None
    nft_action: str | None = None
    failure_reason: str | None = None


class NftTransferInput(Routed):
    transfer_id: str
    purchase_id: str
    tenant: str
    mint: str
    from_wallet: str
    to_wallet: str
    buyer_email: str
    event_id: str
    seat: str


class NftTransferState(BaseModel):
    transfer_id: str
    status: str = "pending"  # pending | transferred | refused
    signature: str | None = None
    failure_reason: str | None = None
