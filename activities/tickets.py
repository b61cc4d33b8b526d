"""Database steps of ticket purchases, refunds and transfers (queue ``db``)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.job_log import job_log
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


class TicketActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn(name="tickets.payment_captured")
    async def payment_captured(self, captured: PaymentCapturedInput) -> PaymentCapturedResult:
        async with self._sessions.begin() as session:
            result = await tickets.payment_captured(session, captured)
        await job_log(
            self._sessions,
            f"payment captured: PaymentIntent {captured.payment_intent}, "
            f"{captured.amount_minor} {captured.currency} minor units",
        )
        return result

    @activity.defn(name="tickets.update")
    async def update(self, change: PurchaseUpdate) -> str:
        async with self._sessions.begin() as session:
            status = (await tickets.update(session, change)).status
        mint = f", mint {change.mint}" if change.mint else ""
        await job_log(self._sessions, f"purchase {status}{mint}")
        return status

    @activity.defn(name="tickets.reserve_refund")
    async def reserve_refund(self, request: ReserveRefundInput) -> ReservedRefund:
        async with self._sessions.begin() as session:
            reserved = await tickets.reserve_refund(session, request)
        await job_log(
            self._sessions,
            f"refund {request.refund_id} reserved: {reserved.amount_minor} minor units of "
            f"PaymentIntent {reserved.payment_intent}",
        )
        return reserved

    @activity.defn(name="tickets.settle_refund")
    async def settle_refund(self, settled: RefundSettledInput) -> None:
        async with self._sessions.begin() as session:
            await tickets.settle_refund(session, settled)
        outcome = "succeeded" if settled.succeeded else "failed"
        stripe = f" (Stripe refund {settled.stripe_refund_id})" if settled.stripe_refund_id else ""
        await job_log(
            self._sessions,
            f"refund {settled.refund_id} {outcome}{stripe}",
            level="info" if settled.succeeded else "warning",
        )

    @activity.defn(name="tickets.mint_outcome")
    async def mint_outcome(self, request: MintOutcomeInput) -> MintOutcome:
        async with self._sessions() as session:
            purchase = await tickets.get(session, request.purchase_id)
            return MintOutcome(status=purchase.status, mint=purchase.mint_address)

    @activity.defn(name="tickets.record_transfer")
    async def record_transfer(self, change: TransferRecordInput) -> None:
        async with self._sessions.begin() as session:
            await tickets.record_transfer(session, change)
        signature = f", signature {change.signature}" if change.signature else ""
        await job_log(self._sessions, f"transfer {change.transfer_id} {change.status}{signature}")
