"""M-Pesa activities: the STK push, the STK query and Transaction Status, on the ``mpesa`` queue."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from domain.errors import (
    DarajaAuthError,
    DarajaPushUnconfirmed,
    DarajaPushUnknown,
    DarajaPushUnresolved,
    DarajaRateLimited,
    DarajaRejected,
    DarajaUnavailable,
)
from domain.mpesa import (
    StkPushInput,
    StkPushResult,
    StkQueryInput,
    StkQueryResult,
    TransactionStatusInput,
    TransactionStatusRequested,
)
from domain.push_attempts import Adopt, AttemptState, PushAgain, Wait
from providers.daraja import DarajaClient
from runtime.logging import get_logger
from store import push_attempts

log = get_logger("activities.mpesa")

#: errors raised before the push reached Daraja, or Daraja's refusal: nobody was prompted
NOT_SENT = (DarajaRejected, DarajaAuthError, DarajaRateLimited)
#: seconds kept free before the activity's own timeout while an earlier push is awaited
WAIT_MARGIN_SECONDS = 2.0


@dataclass(frozen=True)
class PushAttempts:
    """Where push attempts are recorded, and the rules' two durations (see
    :func:`domain.push_attempts.resolve`)."""

    sessions: async_sessionmaker[AsyncSession]
    prompt_seconds: float
    match_seconds: float


class MpesaActivities:
    def __init__(
        self,
        daraja: DarajaClient,
        callback_url: str,
        status_result_url: str = "",
        attempts: PushAttempts | None = None,
    ) -> None:
        self._daraja = daraja
        self._callback_url = callback_url
        self._attempts = attempts
        #: ``.../mpesa-status-result/<token>``; the deposit id and ``/timeout`` are appended
        self._status_result_url = status_result_url.rstrip("/")

    @activity.defn(name="mpesa.stk_push")
    async def stk_push(self, request: StkPushInput) -> StkPushResult:
        """Prompt the customer's phone, once.

        Daraja has no idempotency key, and STK Push Query needs the CheckoutRequestID a lost
        answer did not deliver. So the attempt is written (``sending``) before the request
        leaves, and Daraja's CheckoutRequestID is written on it before this activity completes.
        A later execution for the same deposit (a retry after the worker died, or the workflow
        pushing again) first resolves the earlier attempts (:func:`store.push_attempts.begin`):
        a recorded or callback-matched CheckoutRequestID is adopted and nothing is sent; an
        unresolved attempt younger than ``MPESA_STK_PROMPT_EXPIRY_SECONDS`` is awaited (its
        prompt may still be on the phone) and then ``DarajaPushUnresolved`` is raised; an
        expired one lets the customer be prompted again only for a request that allows it
        (``prompt_again_after_expiry``), else ``DarajaPushUnconfirmed`` ends the deposit. An
        answer lost after the request went out raises ``DarajaPushUnknown``; the workflow then
        awaits that push's callback too.
        """
        if request.amount_minor % 100:
            raise ValueError("Daraja takes whole shillings")
        attempt = 0
        if self._attempts is not None:
            # a token failure never reaches the push: fetched before any attempt is written
            await self._daraja.access_token()
            begun = await self._begin(self._attempts, request)
            if isinstance(begun, StkPushResult):
                return begun
            attempt = begun
        try:
            result = await self._daraja.stk_push(
                phone=request.phone,
                amount_kes=request.amount_minor // 100,
                callback_url=self._callback_url,
                account_reference=request.account_reference,
                description=request.description,
            )
        except DarajaPushUnknown:
            await self._finish(request, attempt, AttemptState.UNKNOWN)
            raise
        except NOT_SENT:
            await self._finish(request, attempt, AttemptState.NOT_SENT)
            raise
        except DarajaUnavailable as exc:
            # only a connection that never opened proves nobody was prompted
            left = not isinstance(exc.__cause__, httpx.ConnectError | httpx.ConnectTimeout)
            await self._finish(
                request, attempt, AttemptState.UNKNOWN if left else AttemptState.NOT_SENT
            )
            raise
        await self._finish(request, attempt, AttemptState.ACCEPTED, result)
        log.info(
            "stk push accepted",
            deposit_id=request.deposit_id,
            checkout_request_id=result.checkout_request_id,
            attempt=attempt,
            activity_attempt=activity.info().attempt,
        )
        return result

    async def _begin(self, store: PushAttempts, request: StkPushInput) -> StkPushResult | int:
        """The earlier attempts resolved: an adopted push, or the number of the new attempt
        (its row committed). Waits for an unresolved one while this activity's time allows."""
        info = activity.info()
        budget = info.start_to_close_timeout.total_seconds() if info.start_to_close_timeout else 0
        deadline = time.monotonic() + budget - WAIT_MARGIN_SECONDS
        while True:
            async with store.sessions.begin() as session:
                begun = await push_attempts.begin(
                    session,
                    request,
                    now=datetime.now(UTC),
                    prompt_seconds=store.prompt_seconds,
                    match_seconds=store.match_seconds,
                )
            if isinstance(begun, int):
                return begun
            if isinstance(begun, Adopt):
                log.warning(
                    "earlier stk push adopted, nothing sent",
                    deposit_id=request.deposit_id,
                    attempt=begun.attempt,
                    checkout_request_id=begun.checkout_request_id,
                )
                return StkPushResult(
                    merchant_request_id=begun.merchant_request_id,
                    checkout_request_id=begun.checkout_request_id,
                    adopted=True,
                )
            if isinstance(begun, PushAgain):
                log.warning(
                    "stk push not repeated: an earlier attempt's outcome is unknown",
                    deposit_id=request.deposit_id,
                    expired_attempts=list(begun.expired),
                )
                raise DarajaPushUnconfirmed(
                    f"push attempt {begun.expired[-1]} may have prompted the customer and nothing "
                    "resolved it (no CheckoutRequestID, no matching success callback) before its "
                    "prompt expired: not prompting again (a late payment for it is held as an "
                    "unmatched payment for an admin)"
                )
            assert isinstance(begun, Wait)
            pause = min(1.0, begun.seconds)
            if time.monotonic() + pause > deadline:
                raise DarajaPushUnresolved(
                    f"push attempt {begun.attempt} may still be on the customer's phone (no "
                    f"CheckoutRequestID, no callback; its prompt expires in {begun.seconds:.0f} s):"
                    " nothing sent"
                )
            activity.heartbeat(begun.attempt)
            await asyncio.sleep(pause)

    async def _finish(
        self,
        request: StkPushInput,
        attempt: int,
        state: AttemptState,
        result: StkPushResult | None = None,
    ) -> None:
        if self._attempts is None or not attempt:
            return
        async with self._attempts.sessions.begin() as session:
            await push_attempts.finish(session, request.deposit_id, attempt, state, result)

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
