"""M-Pesa activities: the STK push and the STK query, on the ``mpesa`` queue."""

from __future__ import annotations

from temporalio import activity

from domain.mpesa import StkPushInput, StkPushResult, StkQueryInput, StkQueryResult
from providers.daraja import DarajaClient
from runtime.logging import get_logger

log = get_logger("activities.mpesa")


class MpesaActivities:
    def __init__(self, daraja: DarajaClient, callback_url: str) -> None:
        self._daraja = daraja
        self._callback_url = callback_url

    @activity.defn(name="mpesa.stk_push")
    async def stk_push(self, request: StkPushInput) -> StkPushResult:
        """Prompt the customer's phone.

        Daraja has no idempotency key: a retry after a lost answer can prompt twice. The second
        prompt is harmless (only one CheckoutRequestID is followed and credited), so the workflow
        retries this step rather than risk a deposit that never starts.
        """
        if request.amount_minor % 100:
            raise ValueError("Daraja takes whole shillings")
        result = await self._daraja.stk_push(
            phone=request.phone,
            amount_kes=request.amount_minor // 100,
            callback_url=self._callback_url,
            account_reference=request.account_reference,
            description=request.description,
        )
        log.info(
            "stk push accepted",
            deposit_id=request.deposit_id,
            checkout_request_id=result.checkout_request_id,
            attempt=activity.info().attempt,
        )
        return result

    @activity.defn(name="mpesa.stk_query")
    async def stk_query(self, request: StkQueryInput) -> StkQueryResult:
        """Ask Daraja for the outcome; read-only, so always safe to repeat."""
        result = await self._daraja.stk_query(request.checkout_request_id)
        log.info(
            "stk query",
            deposit_id=request.deposit_id,
            pending=result.pending,
            result_code=result.result_code,
        )
        return result
