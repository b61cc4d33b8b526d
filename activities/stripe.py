"""Stripe activities (queue ``stripe``); the Idempotency-Key comes from the workflow (id + step)."""

from __future__ import annotations

from temporalio import activity

from activities import business_metrics
from domain.errors import CardDeclined
from domain.tickets import (
    CancelPaymentInput,
    PayInput,
    PayResult,
    RetrievePaymentInput,
    RetrieveRefundInput,
    StripeRefundInput,
    StripeRefundResult,
)
from providers.stripe import Payment, StripePayments


def _result(payment: Payment) -> PayResult:
    return PayResult(
        payment_intent=payment.id,
        status=payment.status,
        amount_received=payment.amount_received,
        failure_code=payment.failure_code,
        failure_message=payment.failure_message,
    )


class StripeActivities:
    def __init__(self, payments: StripePayments) -> None:
        self._payments = payments

    @activity.defn(name="stripe.pay")
    async def pay(self, request: PayInput) -> PayResult:
        """Create and confirm the PaymentIntent; a declined card raises CardDeclined (final: not
        retried, so counted once as ``payments_processed_total{status="failed"}``)."""
        try:
            payment = await self._payments.pay(
                amount_minor=request.amount_minor,
                currency=request.currency,
                payment_method=request.payment_method,
                idempotency_key=request.idempotency_key,
                metadata=request.metadata,
                description=f"ticket {request.metadata.get('purchase_id', '')}",
            )
        except CardDeclined:
            business_metrics.payment_declined(request.currency)
            raise
        return _result(payment)

    @activity.defn(name="stripe.retrieve")
    async def retrieve(self, request: RetrievePaymentInput) -> PayResult:
        return _result(await self._payments.retrieve(request.payment_intent))

    @activity.defn(name="stripe.cancel")
    async def cancel(self, request: CancelPaymentInput) -> PayResult:
        return _result(
            await self._payments.cancel(
                request.payment_intent, idempotency_key=request.idempotency_key
            )
        )

    @activity.defn(name="stripe.refund")
    async def refund(self, request: StripeRefundInput) -> StripeRefundResult:
        refund = await self._payments.refund(
            payment_intent=request.payment_intent,
            amount_minor=request.amount_minor,
            idempotency_key=request.idempotency_key,
            metadata=request.metadata,
        )
        return StripeRefundResult(
            refund_id=refund.id, amount_minor=refund.amount, status=refund.status
        )

    @activity.defn(name="stripe.retrieve_refund")
    async def retrieve_refund(self, request: RetrieveRefundInput) -> StripeRefundResult:
        refund = await self._payments.retrieve_refund(request.refund_id)
        return StripeRefundResult(
            refund_id=refund.id, amount_minor=refund.amount, status=refund.status
        )
