"""M-Pesa activities: the STK push, the STK query and Transaction Status, on the ``mpesa`` queue."""

from __future__ import annotations

from temporalio import activity

from domain.mpesa import (
    StkPushInput,
    StkPushResult,
    StkQueryInput,
    StkQueryResult,
    TransactionStatusInput,
    TransactionStatusRequested,
)
from providers.daraja import DarajaClient
from runtime.logging import get_logger

log = get_logger("activities.mpesa")


class MpesaActivities:
    def __init__(
        self, daraja: DarajaClient, callback_url: str, status_result_url: str = ""
    ) -> None:
        self._daraja = daraja
        self._callback_url = callback_url
        #: ``.../mpesa-status-result/<token>``; the deposit id and ``/timeout`` are appended
        self._status_result_url = status_result_url.rstrip("/")

    @activity.defn(name="mpesa.stk_push")
    async def stk_push(self, request: StkPushInput) -> StkPushResult:
        """Prompt the customer's phone.

        Daraja has no idempotency key: an answer lost after the request went out raises
        ``DarajaPushUnknown``; the workflow resolves that attempt (its callback) before it pushes
        again, so the customer is not prompted twice. (Deposits started before that retry this
        step under the old policy.)
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

    @activity.defn(name="mpesa.transaction_status")
    async def transaction_status(
        self, request: TransactionStatusInput
    ) -> TransactionStatusRequested:
        """Ask Daraja about the receipt; the result comes to the API's ResultURL, which signals the
        deposit's workflow (``mpesa_transaction_status``). Read-only, safe to repeat."""
        base = f"{self._status_result_url}/{request.deposit_id}"
        requested = await self._daraja.transaction_status(
            receipt=request.receipt,
            result_url=base,
            timeout_url=f"{base}/timeout",
            originator_id=request.originator_id,
        )
        log.info(
            "transaction status requested",
            deposit_id=request.deposit_id,
            conversation_id=requested.conversation_id,
        )
        return requested
