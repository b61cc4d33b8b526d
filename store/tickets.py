"""Ticket purchases, seat holds, refunds, NFT transfers, Stripe events, webhook endpoints.

Money moves in the ledger: a captured payment is Stripe balance + / venue payable -; a refund is
the reverse, keyed by the Stripe refund id. ``amount_refunded`` can never pass
``amount_captured`` (a check constraint, and refunds are reserved under the purchase row's lock).
"""

from __future__ import annotations

import base64
import secrets

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import NotFound, RefundRefused, SeatTaken
from domain.tickets import (
    FINAL_PURCHASE,
    VOID_PURCHASE,
    PaymentCapturedInput,
    PaymentCapturedResult,
    PurchaseStatus,
    PurchaseUpdate,
    RefundSettledInput,
    ReservedRefund,
    ReserveRefundInput,
    TransferRecordInput,
)
from store import accounts, events
from store.ledger import PostingSpec, post_entry
from store.models import (
    NftTransferRecord,
    Notification,
    SeatHold,
    StripeEvent,
    TicketPurchase,
    TicketRefund,
    WebhookEndpoint,
    utcnow,
)

STRIPE_BALANCE = "stripe_balance"
VENUE_PAYABLE = "venue_payable"


async def hold_seat(
    session: AsyncSession, tenant: str, event_id: str, seat: str, purchase_id: str
) -> None:
    try:
        async with session.begin_nested():
            session.add(
                SeatHold(tenant=tenant, event_id=event_id, seat=seat, purchase_id=purchase_id)
            )
            await session.flush()
    except IntegrityError as exc:
        raise SeatTaken(
            f"seat {seat} of event {event_id} is already sold or being bought", field="seat"
        ) from exc


async def release_seat(session: AsyncSession, purchase_id: str) -> None:
    await session.execute(delete(SeatHold).where(SeatHold.purchase_id == purchase_id))


async def get(
    session: AsyncSession, purchase_id: str, *, for_update: bool = False
) -> TicketPurchase:
    query = select(TicketPurchase).where(TicketPurchase.id == purchase_id)
    if for_update:
        query = query.with_for_update()
    purchase = (await session.execute(query)).scalar_one_or_none()
    if purchase is None:
        raise NotFound(f"ticket purchase {purchase_id} not found")
    return purchase


async def by_payment_intent(session: AsyncSession, payment_intent: str) -> TicketPurchase | None:
    query = select(TicketPurchase).where(TicketPurchase.payment_intent_id == payment_intent)
    return (await session.execute(query)).scalar_one_or_none()


async def update(session: AsyncSession, change: PurchaseUpdate) -> TicketPurchase:
    purchase = await get(session, change.purchase_id, for_update=True)
    if purchase.status in FINAL_PURCHASE and change.status not in FINAL_PURCHASE:
        return purchase
    if purchase.status in VOID_PURCHASE and change.status == PurchaseStatus.COMPLETED:
        # refunded (and voided) while the mint ran: the mint is recorded, the ticket stays void
        purchase.mint_address = change.mint or purchase.mint_address
        purchase.token_account = change.token_account or purchase.token_account
        return purchase
    purchase.status = change.status.value
    if change.failure_reason is not None:
        purchase.failure_reason = change.failure_reason
    if change.payment_intent is not None:
        purchase.payment_intent_id = change.payment_intent
    if change.mint is not None:
        purchase.mint_address = change.mint
        purchase.owner_wallet = purchase.owner_wallet or purchase.buyer_wallet
    if change.token_account is not None:
        purchase.token_account = change.token_account
    if change.release_seat:
        await release_seat(session, purchase.id)
    return purchase


async def _money_accounts(session: AsyncSession, tenant: str, currency: str) -> tuple[str, str]:
    code = currency.upper()
    stripe_balance = await accounts.get_or_create_account(
        session, owner_type=accounts.SYSTEM, owner_id="stripe", kind=STRIPE_BALANCE, currency=code
    )
    payable = await accounts.get_or_create_account(
        session,
        owner_type=accounts.SYSTEM,
        owner_id=f"venue:{tenant}",
        kind=VENUE_PAYABLE,
        currency=code,
        tenant=tenant,
    )
    return stripe_balance.id, payable.id


async def payment_captured(
    session: AsyncSession, captured: PaymentCapturedInput
) -> PaymentCapturedResult:
    """Record the captured payment once (ledger key: the PaymentIntent) and sell the held place.

    ``place_kept`` is False when the purchase's hold expired and another buyer took the place:
    the workflow then refunds the payment.
    """
    purchase = await get(session, captured.purchase_id, for_update=True)
    stripe_balance, payable = await _money_accounts(session, purchase.tenant, captured.currency)
    result = await post_entry(
        session,
        idempotency_key=f"stripe:payment:{captured.payment_intent}",
        kind="ticket_payment",
        reference=captured.payment_intent,
        description=f'{{"purchase_id": "{purchase.id}"}}',
        postings=[
            PostingSpec(stripe_balance, captured.amount_minor, captured.currency.upper()),
            PostingSpec(payable, -captured.amount_minor, captured.currency.upper()),
        ],
    )
    purchase.payment_intent_id = captured.payment_intent
    if result.created:
        purchase.amount_captured = captured.amount_minor
    if purchase.status not in FINAL_PURCHASE:
        purchase.status = PurchaseStatus.PAID.value
    kept = await events.mark_sold(session, purchase.id)
    # purchases from before the catalogue keep their (never expiring) hold: always kept
    return PaymentCapturedResult(place_kept=kept or purchase.section is None)


async def reserve_refund(session: AsyncSession, request: ReserveRefundInput) -> ReservedRefund:
    """Reserve ``amount`` of what was captured and not refunded yet, under the purchase's lock.

    The same refund id again answers with the first reservation; an amount above what is left is
    refused (RefundRefused) and nothing is written.
    """
    purchase = await get(session, request.purchase_id, for_update=True)
    known = await session.get(TicketRefund, request.refund_id)
    if known is not None:
        return ReservedRefund(
            refund_id=known.id,
            amount_minor=known.amount_minor,
            payment_intent=str(purchase.payment_intent_id),
            currency=purchase.currency,
            full=purchase.amount_refunded
            + (0 if known.status == "succeeded" else known.amount_minor)
            >= purchase.amount_captured,
            already_done=known.status == "succeeded",
            stripe_refund_id=known.stripe_refund_id,
        )
    if purchase.payment_intent_id is None or purchase.amount_captured == 0:
        raise RefundRefused("nothing was captured for this purchase", field="amount")
    reserved = (
        await session.execute(
            select(func.coalesce(func.sum(TicketRefund.amount_minor), 0)).where(
                TicketRefund.purchase_id == purchase.id, TicketRefund.status == "reserved"
            )
        )
    ).scalar_one()
    left = purchase.amount_captured - purchase.amount_refunded - int(reserved)
    amount = left if request.amount_minor is None else request.amount_minor
    if amount <= 0 or amount > left:
        raise RefundRefused(
            f"refund of {amount} is more than the {left} still refundable on this purchase",
            field="amount",
        )
    session.add(
        TicketRefund(
            id=request.refund_id,
            purchase_id=purchase.id,
            tenant=purchase.tenant,
            amount_minor=amount,
            status="reserved",
            reason=request.reason,
            workflow_id=request.workflow_id,
            requested_by=request.requested_by,
        )
    )
    await session.flush()
    return ReservedRefund(
        refund_id=request.refund_id,
        amount_minor=amount,
        payment_intent=purchase.payment_intent_id,
        currency=purchase.currency,
        full=amount == left and purchase.amount_refunded + amount == purchase.amount_captured,
    )


async def settle_refund(session: AsyncSession, settled: RefundSettledInput) -> None:
    """A refund Stripe made (ledger, refunded amount) or one that failed (reservation released)."""
    refund = await session.get(TicketRefund, settled.refund_id)
    if refund is None and not settled.succeeded:
        return  # nothing was reserved (a refund cancelled before its reservation)
    if refund is None:
        raise NotFound(f"refund {settled.refund_id} not found")
    if refund.status != "reserved":
        return
    purchase = await get(session, refund.purchase_id, for_update=True)
    if not settled.succeeded:
        refund.status = "failed"
        refund.reason = settled.failure_reason or refund.reason
        return
    stripe_balance, payable = await _money_accounts(session, purchase.tenant, purchase.currency)
    await post_entry(
        session,
        idempotency_key=f"stripe:refund:{settled.stripe_refund_id}",
        kind="ticket_refund",
        reference=settled.stripe_refund_id,
        description=f'{{"purchase_id": "{purchase.id}", "refund_id": "{refund.id}"}}',
        postings=[
            PostingSpec(stripe_balance, -refund.amount_minor, purchase.currency.upper()),
            PostingSpec(payable, refund.amount_minor, purchase.currency.upper()),
        ],
    )
    refund.status = "succeeded"
    refund.stripe_refund_id = settled.stripe_refund_id
    purchase.amount_refunded += refund.amount_minor
    full = purchase.amount_refunded >= purchase.amount_captured
    if full or settled.void_ticket:
        # the ticket is void: the place goes back on sale
        await release_seat(session, purchase.id)
        # a purchase still paying or minting records its own outcome (the Refund waits for the
        # mint and then marks it); a completed ticket is void from now on
        if purchase.status in (PurchaseStatus.COMPLETED, PurchaseStatus.VOIDED):
            purchase.status = (PurchaseStatus.REFUNDED if full else PurchaseStatus.VOIDED).value


async def record_transfer(session: AsyncSession, change: TransferRecordInput) -> None:
    transfer = await session.get(NftTransferRecord, change.transfer_id)
    if transfer is None:
        raise NotFound(f"transfer {change.transfer_id} not found")
    transfer.status = change.status
    transfer.signature = change.signature or transfer.signature
    transfer.failure_reason = change.failure_reason
    if change.new_owner is not None:
        purchase = await get(session, transfer.purchase_id, for_update=True)
        purchase.owner_wallet = change.new_owner


async def first_stripe_event(
    session: AsyncSession, event_id: str, kind: str, object_id: str | None
) -> bool:
    """Remember a Stripe event; False when it was seen before (a duplicate delivery)."""
    try:
        async with session.begin_nested():
            session.add(StripeEvent(id=event_id, type=kind, object_id=object_id))
            await session.flush()
        return True
    except IntegrityError:
        return False


# --- webhook endpoints and notifications ----------------------------------------------------------


def new_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` + standard base64 of 32 random bytes.

    Not ``token_urlsafe``: its ``-`` and ``_`` are not in the standard alphabet, so verifiers
    decode a different key, or fail on the length (about one secret in four).
    """
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


async def active_endpoints(session: AsyncSession, tenant: str) -> list[WebhookEndpoint]:
    rows = await session.execute(
        select(WebhookEndpoint).where(
            WebhookEndpoint.tenant == tenant,
            WebhookEndpoint.disabled_at.is_(None),
            WebhookEndpoint.kind == "endpoint",  # a callback_url gets only its operation's event
        )
    )
    return list(rows.scalars())


async def disable_endpoint(session: AsyncSession, endpoint_id: str, reason: str) -> None:
    endpoint = await session.get(WebhookEndpoint, endpoint_id)
    if endpoint is not None and endpoint.disabled_at is None:
        endpoint.disabled_at = utcnow()
        endpoint.disabled_reason = reason


async def notification(session: AsyncSession, message_id: str) -> Notification | None:
    return await session.get(Notification, message_id)


async def record_notification(
    session: AsyncSession,
    *,
    message_id: str,
    channel: str,
    target: str,
    kind: str,
    status: str,
    error: str | None,
) -> None:
    row = await session.get(Notification, message_id)
    if row is None:
        session.add(
            Notification(
                id=message_id, channel=channel, target=target, kind=kind, status=status, error=error
            )
        )
    else:
        row.status, row.error = status, error
