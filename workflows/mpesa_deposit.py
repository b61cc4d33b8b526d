"""MpesaDeposit: STK push -> callback (or STK query) -> confirm with Daraja -> USDC -> credit,
exactly once.

Workflow ID ``mpesa-deposit-<deposit_id>``. Signals: ``mpesa_callback`` (from the API's callback
endpoint), ``mpesa_transaction_status`` (the Transaction Status result, from the API's ResultURL
endpoint), ``retry`` / ``abandon`` (a parked step). Query: ``status``.

A callback is a claim: since ``mpesa-deposit-verified-payment`` a success callback is compared
with the push that was sent and confirmed by STK Push Query and, with a receipt, by Transaction
Status, before any USDC leaves the treasury; a push whose answer was lost is resolved (its
callback adopted) before the customer is prompted again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError

from domain.events import EventData, EventType
from domain.evm import AwaitTxInput, SubmittedTx, TransferUsdcInput
from domain.fx import FxQuote, FxQuoteInput, deviation_percent
from domain.money import Currency, format_minor
from domain.mpesa import (
    CreditDepositInput,
    DepositOutcomeInput,
    DepositStatus,
    DepositStep,
    MpesaDepositConfig,
    MpesaDepositInput,
    MpesaDepositState,
    MpesaResultCode,
    RaiseAlertInput,
    RecordConversionInput,
    RecordStkPushInput,
    StkCallback,
    StkPushInput,
    StkPushResult,
    StkQueryInput,
    StkQueryResult,
    TransactionStatusInput,
    TransactionStatusRequested,
    TransactionStatusResult,
)
from domain.payouts import ANSWER_SIGNAL, JoinPayoutBatch, PayoutAnswer, PayoutMember
from domain.queues import ActivityQueue, Routed
from domain.retries import STEP_PARKED_ALERT
from domain.search import OperationStatus
from workflows import policies
from workflows.bookkeeping import db_step
from workflows.dead_letter import Decision, Parkable, set_status
from workflows.events import emit
from workflows.failures import (
    cause_message,
    reraise_if_cancelled,
    root_error_type,
    root_message,
)
from workflows.refs import add_refs

with workflow.unsafe.imports_passed_through():
    from activities.deposits import DepositActivities
    from activities.evm import EvmWriteActivities
    from activities.fx import FxActivities
    from activities.mpesa import MpesaActivities
    from activities.payouts import PayoutActivities

T = TypeVar("T")

#: the on-chain leg (KES -> USDC, sent from the treasury) added after the first deployment
USDC_LEG_PATCH = "mpesa-deposit-usdc-leg"
#: pushes resolved before repeating, callbacks compared and confirmed with Daraja before money moves
VERIFIED_PAYMENT_PATCH = "mpesa-deposit-verified-payment"
#: a short treasury waits (with backoff and an alert) before the deposit parks
TREASURY_WAIT_PATCH = "mpesa-deposit-treasury-wait"
#: the outcome (credited, failed) is pushed to the tenant's endpoints
DEPOSIT_EVENTS_PATCH = "mpesa-deposit-events"
#: the USDC goes out in a batch with other deposits' (MpesaDepositConfig.payout_batch)
PAYOUT_BATCH_PATCH = "mpesa-deposit-payout-batch"
#: the alert raised while a deposit waits for the treasury to be funded
TREASURY_ALERT = "treasury_low"
#: the alert raised when M-Pesa's answers do not add up to the payment that was asked for
MISMATCH_ALERT = "mpesa_payment_mismatch"
#: a bookkeeping write the database refuses for good parks the deposit (it used to fail it, or
#: retry forever when the refusal was a retryable error)
DB_STEP_PARKS_PATCH = "mpesa-deposit-db-step-parks"
#: a push whose outcome stays unknown past its prompt's expiry ends the deposit instead of
#: prompting the customer again (``StkPushInput.prompt_again_after_expiry``)
NO_SECOND_PROMPT_PATCH = "mpesa-deposit-no-second-prompt"
#: the bookkeeping writes, as a parked reason names them
DB_STEPS = {
    "set_outcome": "recording the deposit's status",
    "record_stk_push": "recording the STK push",
    "record_conversion": "recording the USDC conversion",
}
#: Daraja errors that say the push was refused (no customer prompted; pushing again will not help)
PUSH_REFUSED = frozenset(
    {"DarajaRejected", "DarajaAuthError", "ValueError", "DarajaPushUnconfirmed"}
)
#: Daraja errors raised before the push left this process (nobody was prompted)
PUSH_NOT_SENT = frozenset({"DarajaUnavailable", "DarajaRateLimited"})
#: signals kept per kind: a flood of forged messages cannot grow the history without bound
MAX_KEPT_MESSAGES = 20

FAILURE_REASONS = {
    MpesaResultCode.CANCELLED_BY_USER: "the customer cancelled the payment prompt",
    MpesaResultCode.TIMEOUT_USER_UNREACHABLE: "the customer's phone could not be reached in time",
    MpesaResultCode.INSUFFICIENT_FUNDS: "the customer's M-Pesa balance is insufficient",
    MpesaResultCode.WRONG_PIN: "the customer entered a wrong PIN",
}


def workflow_id_for(deposit_id: str) -> str:
    return f"mpesa-deposit-{deposit_id}"


class _Abandoned(Exception):
    """An operator abandoned a parked bookkeeping write: the deposit has ended (abandoned)."""


#: :meth:`MpesaDeposit._submit_usdc` waited or was told to retry: submit again
_WAITED = object()


class _Outcome:
    """What M-Pesa finally said about the payment."""

    def __init__(
        self, result_code: int, result_desc: str, receipt: str | None, source: str
    ) -> None:
        self.result_code = result_code
        self.result_desc = result_desc
        self.receipt = receipt
        self.source = source


@workflow.defn(name="MpesaDeposit")
class MpesaDeposit(Parkable):
    def __init__(self) -> None:
        super().__init__()
        self._state = MpesaDepositState(deposit_id="")
        self._callbacks: dict[str, StkCallback] = {}
        self._quote: FxQuote | None = None
        self._usdc_attempt = 1
        self._verified = False
        self._confirmed: _Outcome | None = None
        self._status_results: list[TransactionStatusResult] = []
        self._status_queries = 0
        self._treasury_short_since: datetime | None = None
        self._treasury_delay = 0.0
        self._batch_joined = False
        self._batch_answer: PayoutAnswer | None = None

    # --- messages ------------------------------------------------------------------------------

    @workflow.signal(name="mpesa_callback")
    def mpesa_callback(self, callback: StkCallback) -> None:
        """Daraja's callback, forwarded by the API. Duplicates are counted and ignored."""
        if callback.checkout_request_id in self._callbacks:
            self._state.duplicate_callbacks += 1
            return
        if self._verified and len(self._callbacks) >= MAX_KEPT_MESSAGES:
            return
        self._callbacks[callback.checkout_request_id] = callback

    @workflow.signal(name="mpesa_transaction_status")
    def mpesa_transaction_status(self, result: TransactionStatusResult) -> None:
        """Daraja's Transaction Status result, forwarded by the API's ResultURL endpoint. Only a
        result whose ConversationID is the one Daraja gave this workflow's query is used."""
        if len(self._status_results) < MAX_KEPT_MESSAGES:
            self._status_results.append(result)

    @workflow.signal(name=ANSWER_SIGNAL)
    def usdc_batch_answer(self, answer: PayoutAnswer) -> None:
        """The PayoutBatcher's answer: paid in its batch, or send the transfer alone. The first
        one counts, even when it comes before the join activity's completion does (the signal
        landed, then the worker died: the batcher may answer before the retry)."""
        if self._batch_answer is None:
            self._batch_answer = answer

    @workflow.query
    def status(self) -> MpesaDepositState:
        return self._state

    # --- run -----------------------------------------------------------------------------------

    @workflow.run
    async def run(self, request: MpesaDepositInput) -> MpesaDepositState:
        try:
            return await self._run(request)
        except _Abandoned:
            return self._state

    async def _run(self, request: MpesaDepositInput) -> MpesaDepositState:
        self._request = request
        self._config = request.config
        self._state = MpesaDepositState(deposit_id=request.deposit_id)
        self._mpesa_queue = request.queue(ActivityQueue.MPESA)
        self._db_queue = request.queue(ActivityQueue.DB)
        self._verified = workflow.patched(VERIFIED_PAYMENT_PATCH)
        if request.quote is not None:
            self._state.fx_quote_kes_per_usdc = request.quote.kes_per_usdc

        try:
            pushed = await self._push()
        except asyncio.CancelledError:
            await self._finish_failed("cancelled before the payment prompt was sent", None, None)
            set_status(OperationStatus.CANCELLED)
            raise
        if not pushed:
            return self._state

        # The customer has been prompted and may pay at any moment: from here a cancellation is
        # refused, and the deposit runs to M-Pesa's final answer (and, if paid, to the credit).
        answer = await self._refusing_cancellation(self._await_outcome)
        if answer is None:
            return self._state
        self._state.paid_at = workflow.now()
        outcome: _Outcome = answer
        if answer.result_code != MpesaResultCode.SUCCESS and self._verified:
            # a failure callback is a claim too: it must not lose a payment Daraja says was made
            outcome = await self._refusing_cancellation(lambda: self._check_failure(answer))
        if outcome.result_code != MpesaResultCode.SUCCESS:
            reason = FAILURE_REASONS.get(
                outcome.result_code, outcome.result_desc or "M-Pesa failure"
            )
            await self._finish_failed(reason, outcome.result_code, outcome.result_desc)
            return self._state
        await self._refusing_cancellation(lambda: self._settle(outcome))
        return self._state

    async def _refusing_cancellation(self, step: Callable[[], Awaitable[T]]) -> T:
        """Run an idempotent step to its end even if the workflow is asked to cancel."""
        while True:
            try:
                return await step()
            except asyncio.CancelledError:
                self._state.cancel_refused = True
                workflow.logger.warning("cancellation refused: the customer has been prompted")

    async def _settle(self, outcome: _Outcome) -> None:
        """Paid: record it, convert and send the USDC on chain, then credit the portfolio.

        Runs again from the top if a cancellation is refused, so every step is resumable: the
        quote is kept, and the transfer's idempotency key makes a second submit the same one.
        Deposits started before the on-chain leg existed (no wallet in their input, or histories
        without the patch marker) are credited in KES as they always were.
        """
        if self._verified:
            confirmed = await self._confirm(outcome)
            if confirmed is None:
                return  # abandoned by an operator
            outcome = confirmed
        await self._paid(outcome)
        conversion: FxQuote | None = None
        if self._request.wallet_address and workflow.patched(USDC_LEG_PATCH):
            conversion = await self._send_usdc()
            if conversion is None:
                return  # abandoned by an operator
        await self._credit(outcome, conversion)

    async def _must(self, what: str, call: Callable[[], Awaitable[T]]) -> T | None:
        """A step that must happen once money has moved: on failure park for an operator instead
        of failing; ``retry`` runs it again, ``abandon`` ends the deposit (None)."""
        while True:
            status, step = self._state.status, self._state.step
            try:
                return await call()
            except ActivityError as err:
                reraise_if_cancelled(err)
                self._state.error = f"{what} failed: {cause_message(err)}"
                if await self._park_with_record(self._state.error) is Decision.ABANDON:
                    await self._finish_abandoned()
                    return None
                self._move(status, step)

    # --- collecting the payment ----------------------------------------------------------------

    async def _push(self) -> bool:
        """Send the STK push and record its CheckoutRequestID. False when the deposit failed."""
        request, state = self._request, self._state
        if self._verified:
            resolved = await self._push_resolving_lost_answers()
            if resolved is None:
                return False
            push = resolved
        else:
            pushed = await self._push_with_retries()
            if pushed is None:
                return False
            push = pushed
        state.checkout_request_id = push.checkout_request_id
        state.merchant_request_id = push.merchant_request_id
        add_refs(push.checkout_request_id)
        early = await self._db(
            DepositActivities.record_stk_push,
            RecordStkPushInput(
                deposit_id=request.deposit_id,
                merchant_request_id=push.merchant_request_id,
                checkout_request_id=push.checkout_request_id,
            ),
        )
        if early is not None:
            self.mpesa_callback(early)
        self._move(DepositStatus.AWAITING_PAYMENT, DepositStep.AWAIT_CALLBACK)
        return True

    def _push_input(self, prompt_again_after_expiry: bool) -> StkPushInput:
        request = self._request
        return StkPushInput(
            deposit_id=request.deposit_id,
            phone=request.phone,
            amount_minor=request.amount_minor,
            account_reference=request.account_reference,
            description=request.description,
            prompt_again_after_expiry=prompt_again_after_expiry,
        )

    async def _push_resolving_lost_answers(self) -> StkPushResult | None:
        """One push per activity; a failure is judged here. Refused: the deposit fails. Never
        sent (Daraja unreachable before the push left, rate limited): push again after a
        backoff. Answer lost (timeout, 5xx, the worker died): the customer may have been
        prompted, so that push is resolved first, by its callback (same phone and amount), which
        is adopted. When none comes within ``push_resolve_seconds``, the push activity resolves
        the attempt from its row (a CheckoutRequestID recorded before the worker died is
        adopted); if nothing does by the time its prompt has expired, the deposit fails rather
        than prompt the customer a second time (``NO_SECOND_PROMPT_PATCH``; older histories
        prompt again). None when the deposit failed."""
        config, state = self._config, self._state
        prompt_again = not workflow.patched(NO_SECOND_PROMPT_PATCH)
        attempt = 0
        while True:
            attempt += 1
            state.pushes_sent += 1
            try:
                result: StkPushResult = await workflow.execute_activity_method(
                    MpesaActivities.stk_push,
                    self._push_input(prompt_again),
                    task_queue=self._mpesa_queue,
                    start_to_close_timeout=policies.provider_timeout(config),
                    retry_policy=policies.STK_PUSH_ONCE,
                )
                return result
            except ActivityError as err:
                reraise_if_cancelled(err)
                kind, error = root_error_type(err), cause_message(err)
            if kind in PUSH_REFUSED:
                await self._finish_failed(f"STK push failed: {error}", None, None)
                return None
            state.error = error
            if kind not in PUSH_NOT_SENT:
                adopted = await self._resolve_lost_push()
                if adopted is not None:
                    state.error = None
                    return adopted
            if attempt >= config.stk_push_max_attempts:
                await self._finish_failed(f"STK push failed: {error}", None, None)
                return None
            await workflow.sleep(
                timedelta(seconds=config.stk_push_initial_interval_seconds * 2 ** (attempt - 1))
            )

    async def _resolve_lost_push(self) -> StkPushResult | None:
        """Wait for the callback of a push whose answer was lost. Daraja's STK callbacks carry
        no AccountReference, so a success is matched by phone and amount (the API hands such a
        callback to the one open deposit that matches); it is adopted as this deposit's push and
        then checked with Daraja like any other. A cancel or timeout callback carries neither,
        so a push the customer declined cannot be matched: after the wait the push activity
        resolves it from its row, or (patched histories) the deposit fails without a second
        prompt."""
        self._move(DepositStatus.INITIATED, DepositStep.RESOLVE_PUSH)
        deadline = workflow.now() + timedelta(seconds=self._config.push_resolve_seconds)
        cancelled = False
        while self._lost_push_callback() is None:
            remaining = (deadline - workflow.now()).total_seconds()
            try:
                if remaining <= 0:
                    raise TimeoutError
                await workflow.wait_condition(
                    lambda: self._lost_push_callback() is not None,
                    timeout=timedelta(seconds=remaining),
                )
            except TimeoutError:
                if cancelled:  # nobody was prompted after all: the cancellation stands
                    raise asyncio.CancelledError() from None
                workflow.logger.warning("no callback for a push whose answer was lost")
                return None
            except asyncio.CancelledError:
                # the customer may have been prompted: wait for that push's answer first
                cancelled = self._state.cancel_refused = True
        callback = self._lost_push_callback()
        assert callback is not None
        return StkPushResult(
            merchant_request_id=callback.merchant_request_id,
            checkout_request_id=callback.checkout_request_id,
            adopted=True,
        )

    def _lost_push_callback(self) -> StkCallback | None:
        request = self._request
        for callback in self._callbacks.values():
            if (
                callback.result_code == MpesaResultCode.SUCCESS
                and callback.phone == request.phone
                and callback.amount_minor == request.amount_minor
            ):
                return callback
        return None

    async def _push_with_retries(self) -> StkPushResult | None:
        """The push of deposits started before ``mpesa-deposit-verified-payment``."""
        request = self._request
        try:
            push = await workflow.execute_activity_method(
                MpesaActivities.stk_push,
                StkPushInput(
                    deposit_id=request.deposit_id,
                    phone=request.phone,
                    amount_minor=request.amount_minor,
                    account_reference=request.account_reference,
                    description=request.description,
                ),
                task_queue=self._mpesa_queue,
                start_to_close_timeout=policies.provider_timeout(self._config),
                retry_policy=policies.stk_push(self._config),
            )
        except ActivityError as err:
            reraise_if_cancelled(err)
            await self._finish_failed(f"STK push failed: {cause_message(err)}", None, None)
            return None
        result: StkPushResult = push
        return result

    async def _await_outcome(self) -> _Outcome | None:
        """The callback, or else STK queries. None when an operator abandoned the deposit."""
        if self._callback() is not None or await self._wait_for_callback(
            self._config.callback_wait_seconds
        ):
            return self._from_callback()
        return await self._query_until_final()

    async def _wait_for_callback(self, seconds: float) -> bool:
        try:
            await workflow.wait_condition(
                lambda: self._callback() is not None, timeout=timedelta(seconds=seconds)
            )
            return True
        except TimeoutError:
            return False

    def _callback(self) -> StkCallback | None:
        checkout = self._state.checkout_request_id
        return self._callbacks.get(checkout) if checkout else None

    def _from_callback(self) -> _Outcome:
        callback = self._callback()
        assert callback is not None
        return _Outcome(callback.result_code, callback.result_desc, callback.receipt, "callback")

    async def _query_until_final(self) -> _Outcome | None:
        """No callback in time: ask Daraja, paced by durable timers, until it gives a final answer.

        A callback arriving meanwhile wins (it carries the receipt). When Daraja never answers
        within the bound, the deposit parks: money may have moved, so it must not just fail.
        """
        state, config = self._state, self._config
        self._move(DepositStatus.CONFIRMING, DepositStep.STK_QUERY)
        await self._record(
            DepositOutcomeInput(deposit_id=state.deposit_id, status=DepositStatus.CONFIRMING)
        )
        while True:
            for _ in range(config.query_max_attempts):
                answer = await self._query_once()
                if self._callback() is not None:
                    return self._from_callback()
                if answer is not None and not answer.pending and answer.result_code is not None:
                    return _Outcome(answer.result_code, answer.result_desc, None, "query")
                if await self._wait_for_callback(config.query_interval_seconds):
                    return self._from_callback()
            reason = f"no final answer from M-Pesa after {state.queries_made} STK queries"
            if await self._park_with_record(reason) is Decision.ABANDON:
                await self._finish_abandoned()
                return None
            self._move(DepositStatus.CONFIRMING, DepositStep.STK_QUERY)

    async def _query_once(self) -> StkQueryResult | None:
        state = self._state
        assert state.checkout_request_id is not None
        state.queries_made += 1
        try:
            return await workflow.execute_activity_method(
                MpesaActivities.stk_query,
                StkQueryInput(
                    deposit_id=state.deposit_id, checkout_request_id=state.checkout_request_id
                ),
                task_queue=self._mpesa_queue,
                start_to_close_timeout=policies.provider_timeout(self._config),
                retry_policy=policies.stk_query(self._config),
            )
        except ActivityError as err:
            reraise_if_cancelled(err)
            state.error = cause_message(err)
            workflow.logger.warning("STK query failed: %s", state.error)
            return None

    # --- confirming the payment with Daraja ----------------------------------------------------

    async def _confirm(self, claim: _Outcome) -> _Outcome | None:
        """Check a success before money moves: a callback against the push that was sent, then
        Daraja's own answers (STK Push Query; Transaction Status by receipt, which carries the
        amount). Anything that does not add up parks the deposit with the reason and an alert;
        ``retry`` checks again (a callback that contradicted the push is set aside: Daraja's
        answers decide), ``abandon`` ends it. None when abandoned."""
        if self._confirmed is not None:
            return self._confirmed
        state = self._state
        while True:
            self._move(DepositStatus.CONFIRMING, DepositStep.CONFIRM_PAYMENT)
            mismatch = self._compare_with_push() if claim.source == "callback" else None
            problem = mismatch
            if problem is None and claim.source != "query":
                problem = await self._confirm_by_query()
            if problem is None and claim.receipt:
                problem = await self._confirm_by_transaction_status(claim.receipt)
            if problem is None:
                self._confirmed = claim
                return claim
            state.error = problem
            await self._alert(problem)
            if await self._park_with_record(problem) is Decision.ABANDON:
                await self._finish_abandoned()
                return None
            if mismatch is not None:
                claim = _Outcome(claim.result_code, claim.result_desc, None, "operator_retry")

    async def _check_failure(self, claim: _Outcome) -> _Outcome:
        """A failure callback, checked with STK Push Query: Daraja's final answer wins (a
        "cancelled" callback for a payment Daraja says was made goes on to the checks of a
        success, with an alert). Without a final answer the callback's failure stands."""
        if claim.source != "callback":
            return claim
        config = self._config
        for _ in range(config.query_max_attempts):
            answer = await self._query_once()
            if answer is not None and not answer.pending and answer.result_code is not None:
                if answer.result_code != MpesaResultCode.SUCCESS:
                    return claim
                await self._alert(
                    f"a callback said ResultCode {claim.result_code} ({claim.result_desc}) but "
                    "Daraja's STK Push Query says the payment succeeded: it is confirmed and "
                    "credited as paid"
                )
                return _Outcome(answer.result_code, answer.result_desc, None, "query")
            await workflow.sleep(timedelta(seconds=config.query_interval_seconds))
        workflow.logger.warning("no final STK query answer: the failure callback stands")
        return claim

    def _compare_with_push(self) -> str | None:
        """The fields of a success callback that differ from the STK push, or None."""
        callback, request, state = self._callback(), self._request, self._state
        assert callback is not None
        wrong = []
        if callback.checkout_request_id != state.checkout_request_id:
            wrong.append("CheckoutRequestID is not the one of the STK push")
        if state.merchant_request_id and callback.merchant_request_id != state.merchant_request_id:
            wrong.append("MerchantRequestID is not the one of the STK push")
        if callback.amount_minor != request.amount_minor:
            said = (
                format_minor(callback.amount_minor, Currency.KES)
                if callback.amount_minor is not None
                else "nothing"
            )
            wrong.append(
                f"Amount is {said} KES, the STK push asked "
                f"{format_minor(request.amount_minor, Currency.KES)} KES"
            )
        if callback.phone != request.phone:
            wrong.append("PhoneNumber is not the phone the STK push prompted")
        if not wrong:
            return None
        return "success callback does not match the STK push: " + "; ".join(wrong)

    async def _confirm_by_query(self) -> str | None:
        """STK Push Query must give the final ResultCode 0; None when it does."""
        config, last = self._config, "no answer"
        for _ in range(config.query_max_attempts):
            answer = await self._query_once()
            if answer is not None and not answer.pending and answer.result_code is not None:
                if answer.result_code == MpesaResultCode.SUCCESS:
                    self._state.confirmed_by.append("stk_query")
                    return None
                return (
                    "the callback says the payment succeeded but Daraja's STK Push Query says "
                    f"ResultCode {answer.result_code} ({answer.result_desc})"
                )
            last = "pending" if answer is not None else (self._state.error or "no answer")
            await workflow.sleep(timedelta(seconds=config.query_interval_seconds))
        return (
            f"STK Push Query gave no final answer after {config.query_max_attempts} tries ({last})"
        )

    async def _confirm_by_transaction_status(self, receipt: str) -> str | None:
        """Transaction Status by receipt must say ResultCode 0, Completed, the same receipt and
        the same amount; None when it does. The result arrives as a signal from the API's
        ResultURL endpoint and counts only with the ConversationID Daraja gave this query."""
        state, config, request = self._state, self._config, self._request
        last = "no answer"
        for _ in range(config.transaction_status_max_attempts):
            self._status_queries += 1
            originator = f"settle-{state.deposit_id}-{self._status_queries}"
            try:
                requested: TransactionStatusRequested = await workflow.execute_activity_method(
                    MpesaActivities.transaction_status,
                    TransactionStatusInput(
                        deposit_id=state.deposit_id, receipt=receipt, originator_id=originator
                    ),
                    task_queue=self._mpesa_queue,
                    start_to_close_timeout=policies.provider_timeout(config),
                    retry_policy=policies.stk_query(config),
                )
            except ActivityError as err:
                reraise_if_cancelled(err)
                last = cause_message(err)
                continue
            conversation = requested.conversation_id
            try:
                await workflow.wait_condition(
                    lambda c=conversation: self._status_result(c) is not None,  # type: ignore[misc]
                    timeout=timedelta(seconds=config.transaction_status_wait_seconds),
                )
            except TimeoutError:
                last = f"no result within {config.transaction_status_wait_seconds:g} s"
                continue
            result = self._status_result(conversation)
            assert result is not None
            if result.timed_out:
                last = "Daraja timed the query out (QueueTimeOutURL)"
                continue
            if result.result_code != MpesaResultCode.SUCCESS:
                return (
                    f"Transaction Status for receipt {receipt} says ResultCode "
                    f"{result.result_code} ({result.result_desc})"
                )
            wrong = []
            if result.receipt is not None and result.receipt != receipt:
                wrong.append("ReceiptNo is not the callback's receipt")
            if result.transaction_status not in (None, "Completed"):
                wrong.append(f"TransactionStatus is {result.transaction_status}")
            if result.amount_minor != request.amount_minor:
                said = (
                    format_minor(result.amount_minor, Currency.KES)
                    if result.amount_minor is not None
                    else "missing"
                )
                wrong.append(
                    f"Amount is {said} KES, the STK push asked "
                    f"{format_minor(request.amount_minor, Currency.KES)} KES"
                )
            if wrong:
                return f"Transaction Status for receipt {receipt}: " + "; ".join(wrong)
            state.confirmed_by.append("transaction_status")
            return None
        return f"Transaction Status for receipt {receipt} gave no result: {last}"

    def _status_result(self, conversation_id: str) -> TransactionStatusResult | None:
        for result in self._status_results:
            if result.conversation_id == conversation_id:
                return result
        return None

    async def _alert(self, message: str, condition: str = MISMATCH_ALERT) -> None:
        try:
            await workflow.execute_activity_method(
                DepositActivities.raise_alert,
                RaiseAlertInput(
                    condition=condition,
                    message=f"deposit {self._state.deposit_id}: {message}",
                    reference=self._state.deposit_id,
                    tenant=self._request.tenant,
                ),
                task_queue=self._db_queue,
                start_to_close_timeout=policies.DB_TIMEOUT,
                retry_policy=policies.DB_BEST_EFFORT,
            )
        except ActivityError:
            workflow.logger.warning("could not raise the alert in the database")

    # --- after payment -------------------------------------------------------------------------

    async def _paid(self, outcome: _Outcome) -> None:
        state = self._state
        state.receipt, state.result_code, state.result_desc = (
            outcome.receipt,
            outcome.result_code,
            outcome.result_desc,
        )
        add_refs(outcome.receipt)
        self._move(DepositStatus.PAID, DepositStep.CREDIT)
        await self._record(
            DepositOutcomeInput(
                deposit_id=state.deposit_id,
                status=DepositStatus.PAID,
                result_code=outcome.result_code,
                result_desc=outcome.result_desc,
                receipt=outcome.receipt,
            )
        )

    # --- the on-chain leg -----------------------------------------------------------------------

    async def _send_usdc(self) -> FxQuote | None:
        """Convert at the provider's rate, send USDC from the treasury through the wallet writer,
        wait for confirmations. None when an operator abandoned the deposit."""
        state, request, config = self._state, self._request, self._config
        assert request.wallet_address is not None
        if self._quote is None:
            self._move(DepositStatus.SENDING_USDC, DepositStep.CONVERT)
            if request.quote is not None:
                quote = await self._rate_for_payment(request.quote)
            else:
                quote = await self._current_rate()
            if quote is None:
                return None
            self._quote = quote
            state.wallet_address = request.wallet_address
            state.usdc_minor, state.fx_kes_per_usdc = quote.usdc_minor, quote.kes_per_usdc
        quote = self._quote
        if config.payout_batch is not None and workflow.patched(PAYOUT_BATCH_PATCH):
            batched = await self._send_in_batch(quote)
            if batched is None:
                return None
            if batched:
                return quote
        while True:
            key = f"mpesa-deposit:{request.deposit_id}:usdc:{self._usdc_attempt}"
            self._move(DepositStatus.SENDING_USDC, DepositStep.SEND_USDC)
            submitted = await self._submit_usdc(key, quote)
            if submitted is None:
                return None
            if submitted is _WAITED:
                continue  # the treasury was short: waited (or an operator said retry)
            assert isinstance(submitted, SubmittedTx)
            self._treasury_short_since = None
            state.usdc_tx_hash = submitted.tx_hash
            add_refs(submitted.tx_hash)
            await self._record_conversion()
            self._move(DepositStatus.SENDING_USDC, DepositStep.CONFIRM_USDC)
            try:
                receipt = await workflow.execute_activity_method(
                    EvmWriteActivities.await_confirmations,
                    AwaitTxInput(
                        idempotency_key=key,
                        confirmations=config.confirmations,
                        use_safe_tag=config.use_safe_tag,
                    ),
                    task_queue=request.queue(ActivityQueue.EVM_WRITE),
                    start_to_close_timeout=timedelta(seconds=config.confirmation_timeout_seconds),
                    heartbeat_timeout=timedelta(seconds=config.evm_heartbeat_timeout_seconds),
                    retry_policy=policies.EVM_CONFIRMATIONS,
                )
            except ActivityError as err:
                reraise_if_cancelled(err)
                if root_error_type(err) == "TreasuryShort" and workflow.patched(
                    TREASURY_WAIT_PATCH
                ):
                    # mined and reverted for want of USDC: final; a new one once funded
                    self._usdc_attempt += 1
                    if not await self._wait_for_treasury(err):
                        return None
                    continue
                reverted = root_error_type(err) == "EvmReverted"
                state.error = f"USDC transfer failed: {cause_message(err)}"
                if await self._park_with_record(state.error) is Decision.ABANDON:
                    await self._finish_abandoned()
                    return None
                if reverted:
                    self._usdc_attempt += 1  # the reverted transaction is final: send a new one
                continue
            state.usdc_tx_hash, state.usdc_block, state.error = (
                receipt.tx_hash,
                receipt.block_number,
                None,
            )
            add_refs(receipt.tx_hash)
            await self._record_conversion()
            return quote

    async def _send_in_batch(self, quote: FxQuote) -> bool | None:
        """Join the PayoutBatcher and wait for its answer: True when the batch paid this deposit
        (its transaction confirmed, this deposit's Transfer log found), False when the batch can
        never land and the transfer is to be sent alone (under this deposit's own key, as
        without batching). Joins once: a refused cancellation re-entering waits again. None
        when an operator abandoned the deposit."""
        state, request, config = self._state, self._request, self._config
        assert config.payout_batch is not None and request.wallet_address is not None
        if self._batch_answer is None:
            self._move(DepositStatus.SENDING_USDC, DepositStep.SEND_USDC)
            if not self._batch_joined:
                member = PayoutMember(
                    deposit_id=request.deposit_id,
                    workflow_id=workflow.info().workflow_id,
                    recipient=request.wallet_address,
                    amount_minor=quote.usdc_minor,
                    key=f"mpesa-deposit:{request.deposit_id}:usdc:{self._usdc_attempt}",
                )
                joined = await self._must(
                    "joining the payout batch",
                    lambda: workflow.execute_activity_method(
                        PayoutActivities.join_batch,
                        JoinPayoutBatch(
                            member=member,
                            config=config.payout_batch,
                            task_queue_prefix=request.task_queue_prefix,
                        ),
                        task_queue=self._db_queue,
                        start_to_close_timeout=policies.DB_TIMEOUT,
                        retry_policy=policies.DB_BOOKKEEPING,
                    ),
                )
                if joined is None:
                    return None
                self._batch_joined = True
            self._move(DepositStatus.SENDING_USDC, DepositStep.CONFIRM_USDC)
            await workflow.wait_condition(lambda: self._batch_answer is not None)
        answer = self._batch_answer
        assert answer is not None
        if not answer.paid or answer.tx_hash is None:
            state.usdc_batch_fallback = answer.error or "not paid by the batch"
            return False
        state.usdc_tx_hash, state.usdc_block = answer.tx_hash, answer.block_number
        state.usdc_log_index, state.usdc_batch_size = answer.log_index, answer.batch_size
        state.error = None
        add_refs(answer.tx_hash)
        await self._record_conversion()
        return True

    async def _submit_usdc(self, key: str, quote: FxQuote) -> SubmittedTx | object | None:
        """The transfer through the wallet writer, like :meth:`_must`; a short treasury
        (``TreasuryShort``, found before anything is signed) waits instead of parking at once:
        :data:`_WAITED` means "submit again". None when an operator abandoned the deposit."""
        request, config = self._request, self._config
        status, step = self._state.status, self._state.step
        try:
            return await workflow.execute_activity_method(
                EvmWriteActivities.transfer_usdc,
                TransferUsdcInput(
                    idempotency_key=key,
                    to=request.wallet_address or "",
                    amount_minor=quote.usdc_minor,
                    purpose="mpesa_deposit",
                ),
                task_queue=request.queue(ActivityQueue.EVM_WRITE),
                start_to_close_timeout=policies.provider_timeout(config),
                retry_policy=policies.evm_submit(config),
            )
        except ActivityError as err:
            reraise_if_cancelled(err)
            if root_error_type(err) == "TreasuryShort" and workflow.patched(TREASURY_WAIT_PATCH):
                return _WAITED if await self._wait_for_treasury(err) else None
            self._state.error = f"sending USDC failed: {cause_message(err)}"
            if await self._park_with_record(self._state.error) is Decision.ABANDON:
                await self._finish_abandoned()
                return None
            self._move(status, step)
            return _WAITED

    async def _wait_for_treasury(self, err: ActivityError) -> bool:
        """The treasury is short: alert ``treasury_low`` (once per wait), sleep with backoff, and
        after ``treasury_short_max_wait_seconds`` park with the shortfall. False when abandoned."""
        config, state = self._config, self._state
        shortfall = root_message(err)
        now = workflow.now()
        if self._treasury_short_since is None:
            self._treasury_short_since = now
            self._treasury_delay = config.treasury_short_initial_interval_seconds
            await self._alert(
                f"the treasury is short, the USDC send waits: {shortfall}", TREASURY_ALERT
            )
        waited = (now - self._treasury_short_since).total_seconds()
        remaining = config.treasury_short_max_wait_seconds - waited
        if remaining <= 0:
            status, step = state.status, state.step
            reason = f"sending USDC failed: {cause_message(err)} (waited {int(waited)} s for funds)"
            self._treasury_short_since = None
            if await self._park_with_record(reason) is Decision.ABANDON:
                await self._finish_abandoned()
                return False
            self._move(status, step)
            return True
        state.error = f"waiting for the treasury: {shortfall}"
        state.updated_at = now
        delay = min(self._treasury_delay, remaining)
        self._treasury_delay = min(
            self._treasury_delay * 2, config.treasury_short_max_interval_seconds
        )
        await workflow.sleep(timedelta(seconds=delay))
        return True

    async def _current_rate(self) -> FxQuote | None:
        request, config = self._request, self._config
        return await self._must(
            "FX quote",
            lambda: workflow.execute_activity_method(
                FxActivities.quote,
                FxQuoteInput(amount_kes_minor=request.amount_minor),
                task_queue=request.queue(ActivityQueue.FX),
                start_to_close_timeout=policies.provider_timeout(config),
                retry_policy=policies.FX,
            ),
        )

    async def _rate_for_payment(self, quoted: FxQuote) -> FxQuote | None:
        """The quote given at initiation, when M-Pesa's answer came before it expired; later the
        current rate, if within ``fx_max_deviation_percent`` of the quote, else the deposit parks
        (``retry`` looks at the rate again). None when abandoned."""
        paid_at = self._state.paid_at or workflow.now()
        if quoted.expires_at is None or paid_at <= quoted.expires_at:
            return quoted
        limit = Decimal(self._config.fx_max_deviation_percent)
        while True:
            current = await self._current_rate()
            if current is None:
                return None
            moved = deviation_percent(Decimal(quoted.kes_per_usdc), Decimal(current.kes_per_usdc))
            if moved <= limit:
                return current
            late = int((paid_at - quoted.expires_at).total_seconds())
            reason = (
                f"FX: the payment came {late} s after the quote expired and the rate moved "
                f"{moved:.2f}% (quoted {quoted.kes_per_usdc}, now {current.kes_per_usdc} KES per "
                f"USDC; at most {limit}% is applied without an operator)"
            )
            if await self._park_with_record(reason) is Decision.ABANDON:
                await self._finish_abandoned()
                return None

    async def _record_conversion(self) -> None:
        state = self._state
        assert state.wallet_address and state.usdc_minor is not None and state.fx_kes_per_usdc
        await self._db(
            DepositActivities.record_conversion,
            RecordConversionInput(
                deposit_id=state.deposit_id,
                wallet_address=state.wallet_address,
                usdc_minor=state.usdc_minor,
                fx_kes_per_usdc=state.fx_kes_per_usdc,
                usdc_tx_hash=state.usdc_tx_hash,
                usdc_log_index=state.usdc_log_index,
            ),
        )

    # --- credit --------------------------------------------------------------------------------

    async def _credit(self, outcome: _Outcome, conversion: FxQuote | None) -> None:
        state = self._state
        assert state.checkout_request_id is not None
        request = CreditDepositInput(
            deposit_id=state.deposit_id,
            checkout_request_id=state.checkout_request_id,
            receipt=outcome.receipt,
            result_desc=outcome.result_desc,
            usdc_minor=conversion.usdc_minor if conversion else None,
            fx_kes_per_usdc=conversion.kes_per_usdc if conversion else None,
            usdc_tx_hash=state.usdc_tx_hash if conversion else None,
        )
        self._state.step = DepositStep.CREDIT
        result = await self._must(
            "credit",
            lambda: workflow.execute_activity_method(
                DepositActivities.credit,
                request,
                task_queue=self._db_queue,
                start_to_close_timeout=policies.DB_TIMEOUT,
                retry_policy=policies.credit(self._config),
            ),
        )
        if result is None:
            return
        state.credited_entry_id = result.entry_id
        state.error = None
        self._move(DepositStatus.CREDITED, DepositStep.DONE)
        set_status(OperationStatus.SUCCEEDED)
        await self._emit(
            EventType.DEPOSIT_CREDITED,
            {
                "receipt": outcome.receipt,
                "usdc_minor": request.usdc_minor,
                "usdc_tx_hash": request.usdc_tx_hash,
            },
        )

    # --- endings and bookkeeping ---------------------------------------------------------------

    async def _finish_failed(self, reason: str, code: int | None, desc: str | None) -> None:
        state = self._state
        state.failure_reason, state.result_code, state.result_desc = reason, code, desc
        self._move(DepositStatus.FAILED, DepositStep.DONE)
        await self._record(
            DepositOutcomeInput(
                deposit_id=state.deposit_id,
                status=DepositStatus.FAILED,
                result_code=code,
                result_desc=desc,
                failure_reason=reason,
            )
        )
        set_status(OperationStatus.FAILED)
        await self._emit(EventType.DEPOSIT_FAILED, {"reason": reason, "result_code": code})

    async def _finish_abandoned(self) -> None:
        state = self._state
        state.failure_reason = self.abandon_reason
        self._move(DepositStatus.ABANDONED, DepositStep.DONE)
        await self._record(
            DepositOutcomeInput(
                deposit_id=state.deposit_id,
                status=DepositStatus.ABANDONED,
                failure_reason=self.abandon_reason,
            )
        )
        set_status(OperationStatus.ABANDONED)

    async def _park_with_record(self, reason: str) -> Decision:
        previous = self._state.status
        self._state.error = reason
        self._move(DepositStatus.NEEDS_ATTENTION, self._state.step)
        if workflow.patched("accept-decision-while-recording-park"):
            self.accept_decisions()
        try:
            await workflow.execute_activity_method(
                DepositActivities.set_outcome,
                DepositOutcomeInput(
                    deposit_id=self._state.deposit_id,
                    status=DepositStatus.NEEDS_ATTENTION,
                    failure_reason=reason,
                ),
                task_queue=self._db_queue,
                start_to_close_timeout=policies.DB_TIMEOUT,
                retry_policy=policies.DB_BEST_EFFORT,
            )
        except ActivityError:
            workflow.logger.warning("could not record needs_attention in the database")
        decision = await self.park(reason)
        if decision is Decision.RETRY:
            self._move(previous, self._state.step)
        return decision

    async def _record(self, outcome: DepositOutcomeInput) -> None:
        await self._db(DepositActivities.set_outcome, outcome)

    def event_scope(self) -> tuple[Routed, str] | None:
        return self._request, self._request.tenant

    async def _emit(self, event_type: EventType, data: EventData) -> None:
        """Push the deposit's outcome to the tenant's endpoints (deposits from before: nothing)."""
        if not workflow.patched(DEPOSIT_EVENTS_PATCH):
            return
        request = self._request
        await emit(
            request,
            request.tenant,
            event_type,
            request.deposit_id,
            {
                "deposit_id": request.deposit_id,
                "user_id": request.user_id,
                "amount_minor": request.amount_minor,
                "currency": "KES",
                **data,
            },
        )

    async def _db(self, method: Callable[..., Awaitable[T]], arg: Any) -> T:
        """A bookkeeping write: retried while the database is away (reported from
        ``STEP_ALERT_AFTER_ATTEMPTS`` on); one it refuses for good (a constraint: a receipt
        another deposit already has) parks the deposit at once with the reason and an alert.
        Abandoned: the deposit ends there (:class:`_Abandoned`)."""
        while True:
            status, step = self._state.status, self._state.step
            try:
                result: T = await db_step(method, arg, queue=self._db_queue)
                return result
            except ActivityError as err:
                reraise_if_cancelled(err)
                if not workflow.patched(DB_STEP_PARKS_PATCH):
                    raise
                what = DB_STEPS.get(getattr(method, "__name__", ""), "recording the deposit")
                reason = f"{what} failed: {cause_message(err)}"
                self._state.error = reason
                await self._alert(reason, STEP_PARKED_ALERT)
                if await self._park_with_record(reason) is Decision.ABANDON:
                    await self._finish_abandoned()
                    raise _Abandoned() from err
                self._move(status, step)

    def _move(self, status: DepositStatus, step: DepositStep) -> None:
        self._state.status, self._state.step = status, step
        self._state.updated_at = workflow.now()


__all__ = ["MpesaDeposit", "MpesaDepositConfig", "workflow_id_for"]
