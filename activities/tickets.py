"""Database steps of ticket purchases, refunds and transfers (queue ``db``)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities import business_metrics
from activities.job_log import add_line
from domain.tickets import (
    MintOutcome,
    MintOutcomeInput,
    PaymentCapturedInput,
    PaymentCapturedResult,
    PurchaseUpdate,
    RefundSettledInput,
    ReservedRefund,
    ReserveRefundInput,
    TransferRecordInput,
)
from store import tickets
from store.models import NftTransferRecord, TicketRefund


class TicketActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn(name="tickets.payment_captured")
    async def payment_captured(self, captured: PaymentCapturedInput) -> PaymentCapturedResult:
        async with self._sessions.begin() as session:
            before = (await tickets.get(session, captured.purchase_id)).amount_captured
            result = await tickets.payment_captured(session, captured)
            purchase = await tickets.get(session, captured.purchase_id)
            captured_now = before == 0 and purchase.amount_captured > 0
            add_line(
                session,
                f"payment captured: PaymentIntent {captured.payment_intent}, "
                f"{captured.amount_minor} {captured.currency} minor units",
            )
        if captured_now:  # counted once committed, and only the first time
            business_metrics.payment_captured(purchase.currency, purchase.amount_captured)
        return result

    @activity.defn(name="tickets.update")
    async def update(self, change: PurchaseUpdate) -> str:
        async with self._sessions.begin() as session:
            before = (await tickets.get(session, change.purchase_id)).mint_address
            purchase = await tickets.update(session, change)
            status, minted_now = purchase.status, before is None and purchase.mint_address
            mint = f", mint {change.mint}" if change.mint else ""
            add_line(session, f"purchase {status}{mint}")
        if minted_now:
            business_metrics.nft_minted()
        return status

    @activity.defn(name="tickets.reserve_refund")
    async def reserve_refund(self, request: ReserveRefundInput) -> ReservedRefund:
        async with self._sessions.begin() as session:
            reserved = await tickets.reserve_refund(session, request)
            add_line(
                session,
                f"refund {request.refund_id} reserved: {reserved.amount_minor} minor units of "
                f"PaymentIntent {reserved.payment_intent}",
            )
        return reserved

    @activity.defn(name="tickets.settle_refund")
    async def settle_refund(self, settled: RefundSettledInput) -> None:
        made: tuple[str, int, str] | None = None
        async with self._sessions.begin() as session:
            refund = await session.get(TicketRefund, settled.refund_id)
            before = refund.status if refund is not None else None
            await tickets.settle_refund(session, settled)
            if refund is not None and before == "reserved" and refund.status == "succeeded":
                purchase = await tickets.get(session, refund.purchase_id)
                made = (purchase.currency, refund.amount_minor, refund_reason(refund))
            outcome = "succeeded" if settled.succeeded else "failed"
            stripe = (
                f" (Stripe refund {settled.stripe_refund_id})" if settled.stripe_refund_id else ""
            )
            add_line(
                session,
                f"refund {settled.refund_id} {outcome}{stripe}",
                level="info" if settled.succeeded else "warning",
            )
        if made is not None:  # counted once committed, and only the first time
            business_metrics.refund_made(*made)

    @activity.defn(name="tickets.mint_outcome")
    async def mint_outcome(self, request: MintOutcomeInput) -> MintOutcome:
        async with self._sessions() as session:
            purchase = await tickets.get(session, request.purchase_id)
            return MintOutcome(status=purchase.status, mint=purchase.mint_address)

    @activity.defn(name="tickets.record_transfer")
    async def record_transfer(self, change: TransferRecordInput) -> None:
        async with self._sessions.begin() as session:
            transfer = await session.get(NftTransferRecord, change.transfer_id)
            before = transfer.status if transfer is not None else None
            await tickets.record_transfer(session, change)
            signature = f", signature {change.signature}" if change.signature else ""
            add_line(session, f"transfer {change.transfer_id} {change.status}{signature}")
        if change.status == "transferred" and before != "transferred":
            business_metrics.nft_transferred()


def refund_reason(refund: TicketRefund) -> str:
    """A bounded label: ``requested`` (by a person, whatever they wrote), else the saga's
    compensation (``mint-failed``, ...), which names the refund ``<purchase id>-<key>``."""
    if refund.requested_by != "system":
        return "requested"
    return refund.id.removeprefix(f"{refund.purchase_id}-")
