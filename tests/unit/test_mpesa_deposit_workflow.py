"""MpesaDeposit on the time-skipping server, with mocked activities.

The callback wait (90 s), query intervals and retry backoffs are real durations in workflow time:
the server skips them, so these tests take well under a second each.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment

from domain.evm import AwaitTxInput, SubmittedTx, TransferUsdcInput, TxReceipt
from domain.fx import FxQuote, FxQuoteInput
from domain.mpesa import (
    CreditDepositInput,
    CreditDepositResult,
    DepositOutcomeInput,
    DepositStatus,
    DepositStep,
    MpesaDepositConfig,
    MpesaDepositInput,
    MpesaDepositState,
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
from domain.payouts import ANSWER_SIGNAL, JoinPayoutBatch, PayoutAnswer, PayoutBatchConfig
from domain.queues import ActivityQueue
from domain.search import SETTLE_STATUS, OperationKind, start_attributes
from tests.fixtures.temporal import EMITTED, new_prefix, running_workers
from workflows.mpesa_deposit import MpesaDeposit

CHECKOUT = "ws_CO_TEST"
PHONE = "254708374149"


@dataclass
class FakeMpesa:
    """Stand-ins for the M-Pesa and DB activities, recording what the workflow asked for."""

    query_answers: list[StkQueryResult] = field(default_factory=list)
    #: Daraja's final answer once ``query_answers`` is used up (None: pending for ever)
    truth: int | None = 0
    push_error: Exception | None = None
    #: errors of the first pushes, one per push (then ``push_error`` or success)
    push_errors: list[Exception] = field(default_factory=list)
    #: Transaction Status: the result signalled to the workflow (None: no result ever comes)
    status_result: dict | None = field(
        default_factory=lambda: {"result_code": 0, "amount_minor": 15000}
    )
    status_queries: int = 0
    alerts: list[RaiseAlertInput] = field(default_factory=list)
    #: the client the Transaction Status fake signals the workflow with (set by ``start``)
    client: Client | None = None
    credit_failures: int = 0
    early_callback: StkCallback | None = None
    pushes: int = 0
    #: pushes whose answer was lost (the customer may have been prompted)
    lost_pushes: int = 0
    queries: int = 0
    credits: list[CreditDepositInput] = field(default_factory=list)
    outcomes: list[DepositOutcomeInput] = field(default_factory=list)
    push_started: asyncio.Event = field(default_factory=asyncio.Event)
    push_gate: asyncio.Event | None = None
    # the on-chain leg
    quotes: int = 0
    transfers: list[TransferUsdcInput] = field(default_factory=list)
    transfer_error: Exception | None = None
    #: the treasury's USDC (None: always enough); short, the send fails like the wallet writer's
    treasury_balance: int | None = None
    #: the first this many sends find the treasury empty (then it is funded)
    short_transfers: int = 0
    confirm_errors: list[Exception] = field(default_factory=list)
    confirm_gate: asyncio.Event | None = None
    confirm_started: asyncio.Event = field(default_factory=asyncio.Event)
    conversions: list[RecordConversionInput] = field(default_factory=list)
    # holds the database write of a park (the status query already says needs_attention)
    park_record_gate: asyncio.Event | None = None
    park_recording: asyncio.Event = field(default_factory=asyncio.Event)
    # batched payouts: the PayoutBatcher's answer, signalled by the join activity itself
    batch_answer: PayoutAnswer | None = None
    joins: list[JoinPayoutBatch] = field(default_factory=list)

    def activities(self) -> dict[ActivityQueue, list]:
        @activity.defn(name="mpesa.stk_push")
        async def stk_push(request: StkPushInput) -> StkPushResult:
            # the activity's attempt rows, in short: a push whose answer was lost and that
            # nothing resolved is never followed by a second prompt when the input forbids it
            if self.lost_pushes and not request.prompt_again_after_expiry:
                raise ApplicationError(
                    "push attempt 1 may have prompted the customer ...: not prompting again",
                    type="DarajaPushUnconfirmed",
                    non_retryable=True,
                )
            self.pushes += 1
            self.push_started.set()
            if self.push_gate is not None:
                await self.push_gate.wait()
            if self.push_errors:
                error = self.push_errors.pop(0)
                if isinstance(error, ApplicationError) and error.type == "DarajaPushUnknown":
                    self.lost_pushes += 1
                raise error
            if self.push_error is not None:
                raise self.push_error
            return StkPushResult(merchant_request_id="m-1", checkout_request_id=CHECKOUT)

        @activity.defn(name="mpesa.stk_query")
        async def stk_query(request: StkQueryInput) -> StkQueryResult:
            self.queries += 1
            if self.query_answers:
                return self.query_answers.pop(0)
            if self.truth is not None:
                return StkQueryResult(
                    checkout_request_id=request.checkout_request_id, result_code=self.truth
                )
            return StkQueryResult(checkout_request_id=request.checkout_request_id, pending=True)

        @activity.defn(name="mpesa.transaction_status")
        async def transaction_status(request: TransactionStatusInput) -> TransactionStatusRequested:
            self.status_queries += 1
            conversation = f"AG_{self.status_queries}"
            if self.status_result is not None and self.client is not None:
                # the result may beat the acknowledgement: it is signalled before returning
                workflow_id = activity.info().workflow_id or ""
                await self.client.get_workflow_handle(workflow_id).signal(
                    "mpesa_transaction_status",
                    TransactionStatusResult(
                        originator_conversation_id=request.originator_id,
                        conversation_id=conversation,
                        result_desc="ok",
                        receipt=request.receipt,
                        transaction_status="Completed",
                        **self.status_result,
                    ),
                )
            return TransactionStatusRequested(
                originator_conversation_id=request.originator_id, conversation_id=conversation
            )

        @activity.defn(name="deposits.raise_alert")
        async def raise_alert(request: RaiseAlertInput) -> str:
            self.alerts.append(request)
            return "alert-1"

        @activity.defn(name="deposits.record_stk_push")
        async def record_stk_push(request: RecordStkPushInput) -> StkCallback | None:
            return self.early_callback

        @activity.defn(name="deposits.set_outcome")
        async def set_outcome(outcome: DepositOutcomeInput) -> str:
            self.outcomes.append(outcome)
            if outcome.status == DepositStatus.NEEDS_ATTENTION and self.park_record_gate:
                self.park_recording.set()
                await self.park_record_gate.wait()
            return outcome.status.value

        @activity.defn(name="deposits.credit")
        async def credit(request: CreditDepositInput) -> CreditDepositResult:
            self.credits.append(request)
            if len(self.credits) <= self.credit_failures:
                raise RuntimeError("database unavailable")
            return CreditDepositResult(
                entry_id="entry-1",
                idempotency_key=f"mpesa:receipt:{request.receipt}",
                already_credited=False,
                balance_minor=15000,
            )

        @activity.defn(name="fx.quote")
        async def quote(request: FxQuoteInput) -> FxQuote:
            self.quotes += 1
            return FxQuote(
                amount_kes_minor=request.amount_kes_minor,
                usdc_minor=1_162_790,
                kes_per_usdc="129.00",
                source="fixed",
            )

        @activity.defn(name="evm.transfer_usdc")
        async def transfer_usdc(request: TransferUsdcInput) -> SubmittedTx:
            self.transfers.append(request)
            if self.transfer_error is not None:
                raise self.transfer_error
            if len(self.transfers) <= self.short_transfers:
                self.treasury_balance = 0
            elif self.short_transfers:
                self.treasury_balance = None
            if self.treasury_balance is not None and self.treasury_balance < request.amount_minor:
                raise ApplicationError(
                    f"treasury holds {self.treasury_balance / 10**6:.6f} USDC, "
                    f"needs {request.amount_minor / 10**6:.6f}",
                    type="TreasuryShort",
                    non_retryable=True,
                )
            return SubmittedTx(
                idempotency_key=request.idempotency_key,
                tx_hash=f"0xhash-{request.idempotency_key[-1]}",
                nonce=len(self.transfers),
            )

        @activity.defn(name="evm.await_confirmations")
        async def await_confirmations(request: AwaitTxInput) -> TxReceipt:
            self.confirm_started.set()
            if self.confirm_gate is not None:
                await self.confirm_gate.wait()
            if self.confirm_errors:
                raise self.confirm_errors.pop(0)
            return TxReceipt(
                idempotency_key=request.idempotency_key,
                tx_hash=f"0xmined-{request.idempotency_key[-1]}",
                nonce=1,
                block_number=42,
                block_hash="0xb",
                confirmations=request.confirmations,
            )

        @activity.defn(name="deposits.record_conversion")
        async def record_conversion(request: RecordConversionInput) -> None:
            self.conversions.append(request)

        @activity.defn(name="payouts.join_batch")
        async def join_batch(request: JoinPayoutBatch) -> str:
            """Answers before it completes, as a batcher may when a join's worker died."""
            self.joins.append(request)
            if self.batch_answer is not None and self.client is not None:
                handle = self.client.get_workflow_handle(request.member.workflow_id)
                await handle.signal(ANSWER_SIGNAL, self.batch_answer)
            return "payout-batcher-test"

        return {
            ActivityQueue.MPESA: [stk_push, stk_query, transaction_status],
            ActivityQueue.DB: [
                record_stk_push,
                set_outcome,
                credit,
                record_conversion,
                raise_alert,
                join_batch,
            ],
            ActivityQueue.FX: [quote],
            ActivityQueue.EVM_WRITE: [transfer_usdc, await_confirmations],
        }

    def statuses(self) -> list[DepositStatus]:
        return [o.status for o in self.outcomes]


def success(receipt: str = "RCP123") -> StkCallback:
    return StkCallback(
        merchant_request_id="m-1",
        checkout_request_id=CHECKOUT,
        result_code=0,
        result_desc="The service request is processed successfully.",
        amount_minor=15000,
        receipt=receipt,
        phone=PHONE,
    )


def failure(code: int, desc: str) -> StkCallback:
    return StkCallback(
        merchant_request_id="m-1", checkout_request_id=CHECKOUT, result_code=code, result_desc=desc
    )


@pytest.fixture
def env(time_skipping_env: WorkflowEnvironment) -> WorkflowEnvironment:
    return time_skipping_env


@dataclass
class Running:
    handle: WorkflowHandle[MpesaDeposit, MpesaDepositState]
    fake: FakeMpesa


@pytest.fixture
async def start(env: WorkflowEnvironment) -> AsyncIterator:
    """Start a deposit with workers serving the fakes; yields a starter function."""
    stacks = []

    async def _start(
        fake: FakeMpesa,
        config: MpesaDepositConfig | None = None,
        wallet: str | None = None,
        quote: FxQuote | None = None,
    ) -> Running:
        prefix = new_prefix()
        fake.client = env.client
        cm = running_workers(
            env.client, prefix, workflows=[MpesaDeposit], activities=fake.activities()
        )
        queue = await cm.__aenter__()
        stacks.append(cm)
        deposit_id = str(uuid.uuid4())
        handle = await env.client.start_workflow(
            MpesaDeposit.run,
            MpesaDepositInput(
                deposit_id=deposit_id,
                tenant="t1",
                user_id="u1",
                subject="alice",
                phone=PHONE,
                amount_minor=15000,
                account_reference="Settle",
                config=config or MpesaDepositConfig(),
                task_queue_prefix=prefix,
                wallet_address=wallet,
                quote=quote,
            ),
            id=f"mpesa-deposit-{deposit_id}",
            task_queue=queue,
            search_attributes=start_attributes(OperationKind.MPESA_DEPOSIT, "t1", "alice"),
        )
        return Running(handle, fake)

    yield _start
    for cm in reversed(stacks):
        await cm.__aexit__(None, None, None)


async def wait_state(
    handle: WorkflowHandle,
    predicate,
    what: str,
    *,
    advance: WorkflowEnvironment | None = None,
    step_seconds: float = 2.0,
) -> MpesaDepositState:
    """Query until the workflow's state satisfies ``predicate``.

    Queries do not skip time. Where the workflow must get past timers or retry backoffs first,
    ``advance`` moves the test server's clock forward ``step_seconds`` between queries.
    """
    for _ in range(500):
        state = await handle.query(MpesaDeposit.status)
        if predicate(state):
            return state
        if advance is not None:
            await advance.sleep(step_seconds)
        else:
            await asyncio.sleep(0.02)
    pytest.fail(f"workflow never reached: {what}; last state {state}")


async def settle_status(client: Client, workflow_id: str) -> str | None:
    description = await client.get_workflow_handle(workflow_id).describe()
    return description.typed_search_attributes.get(SETTLE_STATUS)


async def test_callback_success_credits_once_with_receipt(start) -> None:
    run = await start(FakeMpesa())
    await wait_state(
        run.handle, lambda s: s.step == DepositStep.AWAIT_CALLBACK, "awaiting callback"
    )
    await run.handle.signal(MpesaDeposit.mpesa_callback, success())
    state = await run.handle.result()
    assert state.status == DepositStatus.CREDITED
    assert state.receipt == "RCP123"
    assert [c.receipt for c in run.fake.credits] == ["RCP123"]
    # the callback's claim was confirmed with Daraja before the credit
    assert run.fake.queries == 1 and run.fake.status_queries == 1
    assert state.confirmed_by == ["stk_query", "transaction_status"]
    assert DepositStatus.PAID in run.fake.statuses()


async def test_the_outcome_is_handed_over_as_one_event(start) -> None:
    """A credit and a failure each hand one event (keyed by the deposit) to events.emit_event."""
    runs = []
    # Daraja's query agrees with each callback
    for fake, callback in ((FakeMpesa(), success()), (FakeMpesa(truth=1032), failure(1032, "no"))):
        run = await start(fake)
        await wait_state(
            run.handle, lambda s: s.step == DepositStep.AWAIT_CALLBACK, "awaiting callback"
        )
        await run.handle.signal(MpesaDeposit.mpesa_callback, callback)
        await run.handle.result()
        runs.append(run)
    credited, failed = runs

    def events_of(run: Running) -> list[tuple[str, str, str]]:
        deposit_id = run.handle.id.removeprefix("mpesa-deposit-")
        return [
            (e.tenant, e.event_type, e.key)
            for e in EMITTED
            if e.data.get("deposit_id") == deposit_id
        ]

    credited_id = credited.handle.id.removeprefix("mpesa-deposit-")
    failed_id = failed.handle.id.removeprefix("mpesa-deposit-")
    assert events_of(credited) == [("t1", "deposit.credited", f"deposit.credited:{credited_id}")]
    assert events_of(failed) == [("t1", "deposit.failed", f"deposit.failed:{failed_id}")]


@pytest.mark.parametrize(
    ("code", "desc", "reason_fragment"),
    [
        (1032, "Request cancelled by user", "cancelled"),
        (1037, "DS timeout user cannot be reached", "could not be reached"),
        (1, "The balance is insufficient for the transaction.", "insufficient"),
        (9999, "Something unusual", "Something unusual"),
    ],
)
async def test_failed_callback_fails_with_reason_and_never_credits(
    start, env: WorkflowEnvironment, code: int, desc: str, reason_fragment: str
) -> None:
    run = await start(FakeMpesa(truth=code))  # Daraja's query agrees with the callback
    await wait_state(
        run.handle, lambda s: s.step == DepositStep.AWAIT_CALLBACK, "awaiting callback"
    )
    await run.handle.signal(MpesaDeposit.mpesa_callback, failure(code, desc))
    state = await run.handle.result()
    assert state.status == DepositStatus.FAILED
    assert state.result_code == code
    assert reason_fragment in (state.failure_reason or "")
    assert run.fake.credits == []
    assert run.fake.statuses()[-1] == DepositStatus.FAILED
    assert await settle_status(env.client, run.handle.id) == "failed"


async def test_no_callback_then_query_until_final_success(start) -> None:
    fake = FakeMpesa(
        query_answers=[
            StkQueryResult(checkout_request_id=CHECKOUT, pending=True),
            StkQueryResult(checkout_request_id=CHECKOUT, pending=True),
            StkQueryResult(checkout_request_id=CHECKOUT, result_code=0, result_desc="ok"),
        ]
    )
    run = await start(fake)
    state = await run.handle.result()  # skips the 90 s callback wait and the query intervals
    assert state.status == DepositStatus.CREDITED
    assert fake.queries == 3
    assert state.queries_made == 3
    assert state.receipt is None
    assert fake.credits[0].receipt is None
    assert DepositStatus.CONFIRMING in fake.statuses()


async def test_timeout_then_query_reports_the_failure(start) -> None:
    fake = FakeMpesa(
        query_answers=[
            StkQueryResult(
                checkout_request_id=CHECKOUT,
                result_code=1037,
                result_desc="DS timeout user cannot be reached",
            )
        ]
    )
    run = await start(fake)
    state = await run.handle.result()
    assert state.status == DepositStatus.FAILED
    assert state.result_code == 1037
    assert fake.credits == []


async def test_callback_during_queries_wins_over_query_answers(
    start, env: WorkflowEnvironment
) -> None:
    """A late callback (with its receipt) is taken even while queries still say pending."""
    fake = FakeMpesa(truth=None)
    run = await start(
        fake, MpesaDepositConfig(callback_wait_seconds=5, query_interval_seconds=3600)
    )
    await wait_state(run.handle, lambda s: s.step == DepositStep.STK_QUERY, "querying", advance=env)
    fake.truth = 0  # the customer has paid: Daraja's query says so from now on
    await run.handle.signal(MpesaDeposit.mpesa_callback, success("LATE1"))
    state = await run.handle.result()
    assert state.status == DepositStatus.CREDITED
    assert state.receipt == "LATE1"


async def test_success_callback_contradicted_by_the_query_parks_and_never_moves_money(
    start,
) -> None:
    """A success callback is a claim: Daraja's STK Push Query saying "cancelled" wins, the
    deposit parks with an alert, and nothing is sent or credited; abandon ends it."""
    fake = FakeMpesa(truth=1032, early_callback=success("FORGED1"))
    run = await start(fake, wallet=WALLET)
    parked = await wait_state(
        run.handle, lambda s: s.status == DepositStatus.NEEDS_ATTENTION, "parked"
    )
    assert "STK Push Query says ResultCode 1032" in (parked.error or "")
    assert [a.condition for a in fake.alerts] == ["mpesa_payment_mismatch"]
    assert fake.status_queries == 0  # the query already contradicted the claim
    await run.handle.signal(MpesaDeposit.abandon, "forged callback")
    state = await run.handle.result()
    assert state.status == DepositStatus.ABANDONED
    assert fake.credits == [] and fake.transfers == [] and fake.quotes == 0
    assert DepositStatus.PAID not in fake.statuses()


async def test_duplicate_callbacks_credit_once(start) -> None:
    run = await start(FakeMpesa())
    await wait_state(
        run.handle, lambda s: s.step == DepositStep.AWAIT_CALLBACK, "awaiting callback"
    )
    for _ in range(3):
        await run.handle.signal(MpesaDeposit.mpesa_callback, success())
    await run.handle.signal(
        MpesaDeposit.mpesa_callback, failure(1032, "late duplicate says cancelled")
    )
    state = await run.handle.result()
    assert state.status == DepositStatus.CREDITED
    assert len(run.fake.credits) == 1
    assert state.duplicate_callbacks == 3


async def test_callback_for_another_checkout_is_ignored(start) -> None:
    run = await start(FakeMpesa(), MpesaDepositConfig(callback_wait_seconds=30))
    await wait_state(
        run.handle, lambda s: s.step == DepositStep.AWAIT_CALLBACK, "awaiting callback"
    )
    stranger = success("OTHER").model_copy(update={"checkout_request_id": "ws_CO_OTHER"})
    await run.handle.signal(MpesaDeposit.mpesa_callback, stranger)
    run.fake.query_answers.append(
        StkQueryResult(checkout_request_id=CHECKOUT, result_code=1032, result_desc="cancelled")
    )
    state = await run.handle.result()
    assert state.status == DepositStatus.FAILED
    assert run.fake.credits == []


async def test_credit_failing_parks_then_retry_signal_credits(
    start, env: WorkflowEnvironment
) -> None:
    config = MpesaDepositConfig(credit_max_attempts=3)
    fake = FakeMpesa(credit_failures=3)
    run = await start(fake, config)
    await wait_state(
        run.handle, lambda s: s.step == DepositStep.AWAIT_CALLBACK, "awaiting callback"
    )
    await run.handle.signal(MpesaDeposit.mpesa_callback, success())
    parked = await wait_state(
        run.handle,
        lambda s: s.status == DepositStatus.NEEDS_ATTENTION,
        "needs_attention",
        advance=env,
    )
    assert "credit failed" in (parked.error or "")
    assert len(fake.credits) == 3
    assert await settle_status(env.client, run.handle.id) == "needs_attention"
    assert DepositStatus.NEEDS_ATTENTION in fake.statuses()

    await run.handle.signal(MpesaDeposit.retry)
    state = await run.handle.result()
    assert state.status == DepositStatus.CREDITED
    assert len(fake.credits) == 4
    assert state.error is None
    assert await settle_status(env.client, run.handle.id) == "succeeded"


async def test_parked_credit_can_be_abandoned_with_a_reason(
    start, env: WorkflowEnvironment
) -> None:
    fake = FakeMpesa(credit_failures=100)
    run = await start(fake, MpesaDepositConfig(credit_max_attempts=2))
    await wait_state(
        run.handle, lambda s: s.step == DepositStep.AWAIT_CALLBACK, "awaiting callback"
    )
    await run.handle.signal(MpesaDeposit.mpesa_callback, success())
    await wait_state(
        run.handle, lambda s: s.status == DepositStatus.NEEDS_ATTENTION, "parked", advance=env
    )
    await run.handle.signal(MpesaDeposit.abandon, "refunded to the customer by hand")
    state = await run.handle.result()
    assert state.status == DepositStatus.ABANDONED
    assert state.failure_reason == "refunded to the customer by hand"
    assert fake.statuses()[-1] == DepositStatus.ABANDONED
    assert await settle_status(env.client, run.handle.id) == "abandoned"


async def test_retry_sent_while_the_park_is_being_recorded_is_not_lost(
    start, env: WorkflowEnvironment
) -> None:
    """An operator who sees needs_attention and sends retry while the workflow still records
    the park in the database: the retry counts (it was dropped before, and the deposit waited
    for a second retry; found by the temporal-CLI test hanging under load)."""
    fake = FakeMpesa(credit_failures=3, park_record_gate=asyncio.Event())
    run = await start(fake, MpesaDepositConfig(credit_max_attempts=3))
    await wait_state(
        run.handle, lambda s: s.step == DepositStep.AWAIT_CALLBACK, "awaiting callback"
    )
    await run.handle.signal(MpesaDeposit.mpesa_callback, success())
    for _ in range(100):  # past the credit's retry backoffs, up to the park's record
        if fake.park_recording.is_set():
            break
        await env.sleep(2)
    assert fake.park_recording.is_set()
    state = await run.handle.query(MpesaDeposit.status)
    assert state.status == DepositStatus.NEEDS_ATTENTION
    await run.handle.signal(MpesaDeposit.retry)
    assert fake.park_record_gate is not None
    fake.park_record_gate.set()
    final = await asyncio.wait_for(run.handle.result(), 30)
    assert final.status == DepositStatus.CREDITED and len(fake.credits) == 4


async def test_retry_signal_before_parking_is_ignored(start) -> None:
    run = await start(FakeMpesa())
    await wait_state(
        run.handle, lambda s: s.step == DepositStep.AWAIT_CALLBACK, "awaiting callback"
    )
    await run.handle.signal(MpesaDeposit.retry)
    await run.handle.signal(MpesaDeposit.mpesa_callback, success())
    state = await run.handle.result()
    assert state.status == DepositStatus.CREDITED


async def test_queries_without_final_answer_park_instead_of_failing(
    start, env: WorkflowEnvironment
) -> None:
    fake = FakeMpesa(truth=None)  # every query answers pending
    run = await start(fake, MpesaDepositConfig(query_max_attempts=3))
    parked = await wait_state(
        run.handle,
        lambda s: s.status == DepositStatus.NEEDS_ATTENTION,
        "parked after queries",
        advance=env,
        step_seconds=10,
    )
    assert "no final answer" in (parked.error or "")
    assert fake.queries == 3
    fake.query_answers.append(StkQueryResult(checkout_request_id=CHECKOUT, result_code=0))
    await run.handle.signal(MpesaDeposit.retry)
    state = await run.handle.result()
    assert state.status == DepositStatus.CREDITED
    assert fake.queries == 4


async def test_rejected_stk_push_fails_fast(start) -> None:
    fake = FakeMpesa(
        push_error=ApplicationError("invalid phone", type="DarajaRejected", non_retryable=True)
    )
    run = await start(fake)
    state = await run.handle.result()
    assert state.status == DepositStatus.FAILED
    assert "invalid phone" in (state.failure_reason or "")
    assert fake.pushes == 1


async def test_stk_push_retried_five_times_then_fails(start) -> None:
    fake = FakeMpesa(push_error=RuntimeError("Daraja 503"))
    run = await start(fake)
    state = await run.handle.result()
    assert state.status == DepositStatus.FAILED
    assert fake.pushes == 5


async def test_cancel_before_push_fails_the_deposit(start, env: WorkflowEnvironment) -> None:
    fake = FakeMpesa(push_gate=asyncio.Event())
    run = await start(fake)
    await asyncio.wait_for(fake.push_started.wait(), 10)
    await run.handle.cancel()
    with pytest.raises(WorkflowFailureError) as failure_info:
        await run.handle.result()
    assert isinstance(failure_info.value.cause, CancelledError)
    assert fake.statuses()[-1] == DepositStatus.FAILED
    assert await settle_status(env.client, run.handle.id) == "cancelled"


async def test_cancel_after_prompt_is_refused_and_deposit_completes(start) -> None:
    run = await start(FakeMpesa())
    await wait_state(
        run.handle, lambda s: s.step == DepositStep.AWAIT_CALLBACK, "awaiting callback"
    )
    await run.handle.cancel()
    await wait_state(run.handle, lambda s: s.cancel_refused, "cancellation refused")
    await run.handle.signal(MpesaDeposit.mpesa_callback, success())
    state = await asyncio.wait_for(
        run.handle.result(), timeout=timedelta(seconds=30).total_seconds()
    )
    assert state.status == DepositStatus.CREDITED
    assert len(run.fake.credits) == 1


WALLET = "0x1111111111111111111111111111111111111111"


async def test_usdc_leg_sends_once_then_credits_usdc(start) -> None:
    fake = FakeMpesa()
    run = await start(fake, wallet=WALLET)
    await wait_state(
        run.handle, lambda s: s.step == DepositStep.AWAIT_CALLBACK, "awaiting callback"
    )
    await run.handle.signal(MpesaDeposit.mpesa_callback, success())
    state = await run.handle.result()
    assert state.status == DepositStatus.CREDITED
    assert [t.to for t in fake.transfers] == [WALLET]
    assert fake.transfers[0].amount_minor == 1_162_790
    assert fake.transfers[0].idempotency_key.endswith(":usdc:1")
    assert state.usdc_tx_hash == "0xmined-1" and state.usdc_block == 42
    assert state.usdc_minor == 1_162_790 and state.fx_kes_per_usdc == "129.00"
    (credit,) = fake.credits
    assert (credit.usdc_minor, credit.usdc_tx_hash) == (1_162_790, "0xmined-1")
    assert fake.conversions[-1].usdc_tx_hash == "0xmined-1"


BATCHING = MpesaDepositConfig(
    payout_batch=PayoutBatchConfig(
        disperse_address="0xef11D1c2aA48826D4c41e54ab82D1Ff5Ad8A64Ca",
        usdc_address="0x5FbDB2315678afecb367f032d93F642f64180aa3",
    )
)


async def test_batched_payout_credits_with_the_batch_log_and_sends_nothing_alone(start) -> None:
    fake = FakeMpesa(
        batch_answer=PayoutAnswer(
            paid=True,
            batch_key="payout-batch:abc",
            tx_hash="0xbatch",
            block_number=50,
            log_index=3,
            batch_size=7,
        )
    )
    run = await start(fake, BATCHING, wallet=WALLET)
    await wait_state(
        run.handle, lambda s: s.step == DepositStep.AWAIT_CALLBACK, "awaiting callback"
    )
    await run.handle.signal(MpesaDeposit.mpesa_callback, success())
    state = await run.handle.result()
    assert state.status == DepositStatus.CREDITED
    assert not fake.transfers
    (join,) = fake.joins
    assert (join.member.recipient, join.member.amount_minor) == (WALLET, 1_162_790)
    assert join.member.key.endswith(":usdc:1") and join.member.workflow_id == run.handle.id
    assert (state.usdc_tx_hash, state.usdc_log_index, state.usdc_batch_size) == ("0xbatch", 3, 7)
    (credit,) = fake.credits
    assert (credit.usdc_minor, credit.usdc_tx_hash) == (1_162_790, "0xbatch")
    assert fake.conversions[-1].usdc_log_index == 3


async def test_a_batch_that_could_not_pay_falls_back_to_its_own_transfer(start) -> None:
    fake = FakeMpesa(
        batch_answer=PayoutAnswer(
            paid=False, batch_key="payout-batch:abc", error="EvmReverted: InsufficientAllowance"
        )
    )
    run = await start(fake, BATCHING, wallet=WALLET)
    await wait_state(
        run.handle, lambda s: s.step == DepositStep.AWAIT_CALLBACK, "awaiting callback"
    )
    await run.handle.signal(MpesaDeposit.mpesa_callback, success())
    state = await run.handle.result()
    assert state.status == DepositStatus.CREDITED
    assert len(fake.joins) == 1
    (transfer,) = fake.transfers
    assert transfer.idempotency_key == fake.joins[0].member.key
    assert state.usdc_tx_hash == "0xmined-1" and state.usdc_log_index is None
    assert "InsufficientAllowance" in (state.usdc_batch_fallback or "")
    assert len(fake.credits) == 1


async def test_reverted_transfer_parks_and_retry_sends_a_new_one(
    start, env: WorkflowEnvironment
) -> None:
    fake = FakeMpesa(
        confirm_errors=[ApplicationError("reverted", type="EvmReverted", non_retryable=True)]
    )
    run = await start(fake, wallet=WALLET)
    await wait_state(
        run.handle, lambda s: s.step == DepositStep.AWAIT_CALLBACK, "awaiting callback"
    )
    await run.handle.signal(MpesaDeposit.mpesa_callback, success())
    parked = await wait_state(
        run.handle, lambda s: s.status == DepositStatus.NEEDS_ATTENTION, "parked", advance=env
    )
    assert "USDC transfer failed" in (parked.error or "") and fake.credits == []
    await run.handle.signal(MpesaDeposit.retry)
    state = await run.handle.result()
    assert state.status == DepositStatus.CREDITED
    assert [t.idempotency_key[-1] for t in fake.transfers] == ["1", "2"]
    assert fake.quotes == 1
    assert len(fake.credits) == 1 and fake.credits[0].usdc_tx_hash == "0xmined-2"


async def test_rejected_transfer_parks_and_can_be_abandoned(
    start, env: WorkflowEnvironment
) -> None:
    fake = FakeMpesa(
        transfer_error=ApplicationError(
            "treasury key misused", type="EvmRejected", non_retryable=True
        )
    )
    run = await start(fake, wallet=WALLET)
    await wait_state(
        run.handle, lambda s: s.step == DepositStep.AWAIT_CALLBACK, "awaiting callback"
    )
    await run.handle.signal(MpesaDeposit.mpesa_callback, success())
    await wait_state(
        run.handle, lambda s: s.status == DepositStatus.NEEDS_ATTENTION, "parked", advance=env
    )
    await run.handle.signal(MpesaDeposit.abandon, "sent by hand")
    state = await run.handle.result()
    assert state.status == DepositStatus.ABANDONED and fake.credits == []


async def test_cancel_while_confirming_is_refused_without_a_second_quote_or_transfer(start) -> None:
    fake = FakeMpesa(confirm_gate=asyncio.Event())
    run = await start(fake, wallet=WALLET)
    await wait_state(
        run.handle, lambda s: s.step == DepositStep.AWAIT_CALLBACK, "awaiting callback"
    )
    await run.handle.signal(MpesaDeposit.mpesa_callback, success())
    await asyncio.wait_for(fake.confirm_started.wait(), 10)
    await run.handle.cancel()
    await wait_state(run.handle, lambda s: s.cancel_refused, "cancellation refused")
    assert fake.confirm_gate is not None
    fake.confirm_gate.set()
    state = await run.handle.result()
    assert state.status == DepositStatus.CREDITED
    assert fake.quotes == 1
    assert {t.idempotency_key for t in fake.transfers} == {fake.transfers[0].idempotency_key}
    assert len(fake.credits) == 1


# --- a callback is a claim (issue 12, section 1) ----------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount_minor": 100}, "Amount is 1.00 KES, the STK push asked 150.00 KES"),
        ({"phone": "254799999999"}, "PhoneNumber"),
        ({"merchant_request_id": "m-forged"}, "MerchantRequestID"),
    ],
    ids=["amount", "phone", "merchant-request-id"],
)
async def test_callback_that_differs_from_the_push_parks_with_an_alert(
    start, change: dict, field: str
) -> None:
    fake = FakeMpesa()
    run = await start(fake, wallet=WALLET)
    await wait_state(run.handle, lambda s: s.step == DepositStep.AWAIT_CALLBACK, "awaiting")
    await run.handle.signal(MpesaDeposit.mpesa_callback, success().model_copy(update=change))
    parked = await wait_state(
        run.handle, lambda s: s.status == DepositStatus.NEEDS_ATTENTION, "parked"
    )
    assert field in (parked.error or "")
    assert fake.outcomes[-1].status == DepositStatus.NEEDS_ATTENTION
    assert field in (fake.outcomes[-1].failure_reason or "")
    assert len(fake.alerts) == 1 and field in fake.alerts[0].message
    # nothing asked of Daraja, nothing converted, sent or credited on the callback's word
    assert fake.queries == 0 and fake.status_queries == 0
    assert fake.transfers == [] and fake.credits == [] and fake.quotes == 0
    # an operator's retry sets the callback aside: Daraja's own query decides (here: paid)
    await run.handle.signal(MpesaDeposit.retry)
    state = await run.handle.result()
    assert state.status == DepositStatus.CREDITED
    assert state.receipt is None and fake.status_queries == 0
    assert len(fake.transfers) == 1 and fake.transfers[0].amount_minor == 1_162_790


@pytest.mark.parametrize(
    ("result", "fragment"),
    [
        ({"result_code": 0, "amount_minor": 100}, "Amount is 1.00 KES"),
        ({"result_code": 1, "amount_minor": None}, "says ResultCode 1"),
    ],
    ids=["amount", "unknown-receipt"],
)
async def test_transaction_status_that_disagrees_parks(start, result: dict, fragment: str) -> None:
    fake = FakeMpesa(status_result=result)
    run = await start(fake, wallet=WALLET)
    await wait_state(run.handle, lambda s: s.step == DepositStep.AWAIT_CALLBACK, "awaiting")
    await run.handle.signal(MpesaDeposit.mpesa_callback, success())
    parked = await wait_state(
        run.handle, lambda s: s.status == DepositStatus.NEEDS_ATTENTION, "parked"
    )
    assert "Transaction Status for receipt RCP123" in (parked.error or "")
    assert fragment in (parked.error or "")
    assert fake.transfers == [] and fake.credits == [] and len(fake.alerts) == 1


async def test_transaction_status_without_result_parks(start, env: WorkflowEnvironment) -> None:
    fake = FakeMpesa(status_result=None)  # the ResultURL is never called
    config = MpesaDepositConfig(transaction_status_wait_seconds=0.3)
    run = await start(fake, config, wallet=WALLET)
    await wait_state(run.handle, lambda s: s.step == DepositStep.AWAIT_CALLBACK, "awaiting")
    await run.handle.signal(MpesaDeposit.mpesa_callback, success())
    parked = await wait_state(
        run.handle, lambda s: s.status == DepositStatus.NEEDS_ATTENTION, "parked"
    )
    assert "gave no result" in (parked.error or "")
    assert fake.status_queries == 3 and fake.transfers == []


async def test_forged_transaction_status_result_is_ignored(start, env: WorkflowEnvironment) -> None:
    """A result with another ConversationID (not the one Daraja gave our query) counts for
    nothing, even when it says success."""
    fake = FakeMpesa(status_result=None)
    config = MpesaDepositConfig(
        transaction_status_max_attempts=1, transaction_status_wait_seconds=2
    )
    run = await start(fake, config, wallet=WALLET)
    await wait_state(run.handle, lambda s: s.step == DepositStep.AWAIT_CALLBACK, "awaiting")
    await run.handle.signal(MpesaDeposit.mpesa_callback, success())
    await wait_state(run.handle, lambda s: s.step == DepositStep.CONFIRM_PAYMENT, "confirming")
    await run.handle.signal(
        MpesaDeposit.mpesa_transaction_status,
        TransactionStatusResult(
            originator_conversation_id=f"settle-{run.handle.id.removeprefix('mpesa-deposit-')}-1",
            conversation_id="AG_forged",
            result_code=0,
            result_desc="ok",
            receipt="RCP123",
            amount_minor=15000,
        ),
    )
    parked = await wait_state(
        run.handle, lambda s: s.status == DepositStatus.NEEDS_ATTENTION, "parked"
    )
    assert "gave no result" in (parked.error or "")
    assert fake.transfers == [] and fake.credits == []


def lost_answer() -> ApplicationError:
    return ApplicationError("answer lost", type="DarajaPushUnknown")


async def test_push_whose_answer_was_lost_is_adopted_from_its_callback(start) -> None:
    """One prompt: the push that may have reached Daraja is resolved by its callback, never
    repeated."""
    fake = FakeMpesa(push_errors=[lost_answer()])
    run = await start(fake, wallet=WALLET)
    await wait_state(run.handle, lambda s: s.step == DepositStep.RESOLVE_PUSH, "resolving")
    adopted = success().model_copy(
        update={"checkout_request_id": "ws_CO_LOST", "merchant_request_id": "m-lost"}
    )
    await run.handle.signal(MpesaDeposit.mpesa_callback, adopted)
    state = await run.handle.result()
    assert state.status == DepositStatus.CREDITED
    assert fake.pushes == 1 and state.pushes_sent == 1
    assert state.checkout_request_id == "ws_CO_LOST"
    assert state.confirmed_by == ["stk_query", "transaction_status"]
    assert len(fake.transfers) == 1 and len(fake.credits) == 1


async def test_lost_push_without_a_callback_ends_the_deposit_without_a_second_prompt(
    start, env: WorkflowEnvironment
) -> None:
    """Issue 14 §1: the push's answer was lost and no callback came; the customer may have been
    prompted (and may have paid unseen), so the deposit fails instead of prompting again."""
    fake = FakeMpesa(push_errors=[lost_answer()])
    run = await start(fake, MpesaDepositConfig(push_resolve_seconds=0.5))
    state = await run.handle.result()
    assert state.status == DepositStatus.FAILED
    assert fake.pushes == 1 and fake.credits == [] and fake.transfers == []
    assert "not prompting again" in (state.failure_reason or ""), state.failure_reason
    assert fake.statuses()[-1] == DepositStatus.FAILED


async def test_push_that_never_left_is_pushed_again_without_waiting(start) -> None:
    fake = FakeMpesa(push_errors=[ApplicationError("refused", type="DarajaUnavailable")])
    run = await start(fake, MpesaDepositConfig(push_resolve_seconds=10**6))
    state = await wait_state(
        run.handle, lambda s: s.step == DepositStep.AWAIT_CALLBACK, "second push"
    )
    assert fake.pushes == 2 and state.pushes_sent == 2


# --- FX: the quote of the initiation (issue 12, section 7) ------------------------------------


def initiation_quote(
    rate: str, usdc_minor: int, expires_in: timedelta, now: datetime | None = None
) -> FxQuote:
    """``now``: the workflow clock (the time-skipping server's is far ahead of the wall's)."""
    now = now or datetime.now(UTC)
    return FxQuote(
        amount_kes_minor=15000,
        usdc_minor=usdc_minor,
        kes_per_usdc=rate,
        source="fixed",
        quoted_at=now,
        expires_at=now + expires_in,
    )


async def test_quote_is_honoured_when_the_payment_lands_in_time(
    start, env: WorkflowEnvironment
) -> None:
    now = await env.get_current_time()
    quote = initiation_quote("125.00", 1_200_000, timedelta(hours=1), now)
    fake = FakeMpesa()
    run = await start(fake, wallet=WALLET, quote=quote)
    await wait_state(run.handle, lambda s: s.step == DepositStep.AWAIT_CALLBACK, "awaiting")
    await run.handle.signal(MpesaDeposit.mpesa_callback, success())
    state = await run.handle.result()
    assert state.status == DepositStatus.CREDITED
    assert fake.quotes == 0  # no new rate asked: the quote stands
    assert fake.transfers[0].amount_minor == 1_200_000 and state.fx_kes_per_usdc == "125.00"
    assert state.fx_quote_kes_per_usdc == "125.00"


async def test_late_payment_within_the_deviation_takes_the_current_rate(
    start, env: WorkflowEnvironment
) -> None:
    now = await env.get_current_time()
    quote = initiation_quote("128.00", 1_171_875, -timedelta(minutes=1), now)  # 0.78 % from 129
    fake = FakeMpesa()
    run = await start(fake, wallet=WALLET, quote=quote)
    await wait_state(run.handle, lambda s: s.step == DepositStep.AWAIT_CALLBACK, "awaiting")
    await run.handle.signal(MpesaDeposit.mpesa_callback, success())
    state = await run.handle.result()
    assert state.status == DepositStatus.CREDITED
    assert fake.quotes == 1 and fake.transfers[0].amount_minor == 1_162_790


async def test_late_payment_beyond_the_deviation_parks(start, env: WorkflowEnvironment) -> None:
    now = await env.get_current_time()
    quote = initiation_quote("120.00", 1_250_000, -timedelta(minutes=1), now)  # 7.5 % from 129
    fake = FakeMpesa()
    run = await start(fake, wallet=WALLET, quote=quote)
    await wait_state(run.handle, lambda s: s.step == DepositStep.AWAIT_CALLBACK, "awaiting")
    await run.handle.signal(MpesaDeposit.mpesa_callback, success())
    parked = await wait_state(
        run.handle, lambda s: s.status == DepositStatus.NEEDS_ATTENTION, "parked"
    )
    assert "FX:" in (parked.error or "") and "7.50%" in (parked.error or "")
    assert fake.transfers == [] and fake.credits == []
    await run.handle.signal(MpesaDeposit.abandon, "refunded the customer by hand")
    assert (await run.handle.result()).status == DepositStatus.ABANDONED
    assert fake.transfers == []


async def test_push_whose_worker_died_is_resolved_not_repeated(start) -> None:
    """The worker dies mid-push (the activity times out, no answer at all): as with a lost
    answer, the push is resolved by its callback and the customer is not prompted again."""
    fake = FakeMpesa(push_gate=asyncio.Event())  # never answers: like a worker killed mid-call
    run = await start(fake, MpesaDepositConfig(provider_timeout_seconds=1), wallet=WALLET)
    await wait_state(run.handle, lambda s: s.step == DepositStep.RESOLVE_PUSH, "resolving")
    assert fake.pushes == 1
    await run.handle.signal(
        MpesaDeposit.mpesa_callback,
        success().model_copy(update={"checkout_request_id": "ws_CO_DIED"}),
    )
    state = await run.handle.result()
    assert state.status == DepositStatus.CREDITED and state.checkout_request_id == "ws_CO_DIED"
    assert fake.pushes == 1 and len(fake.credits) == 1


async def test_cancel_while_a_lost_push_is_resolved_waits_for_its_answer(start) -> None:
    """The customer may have been prompted: a cancel waits for that push's callback. It comes
    (paid): the deposit runs on; the cancellation is refused, never a second prompt."""
    fake = FakeMpesa(push_errors=[lost_answer()])
    run = await start(fake, MpesaDepositConfig(push_resolve_seconds=3600), wallet=WALLET)
    await wait_state(run.handle, lambda s: s.step == DepositStep.RESOLVE_PUSH, "resolving")
    await run.handle.cancel()
    await wait_state(run.handle, lambda s: s.cancel_refused, "cancel refused")
    await run.handle.signal(
        MpesaDeposit.mpesa_callback,
        success().model_copy(update={"checkout_request_id": "ws_CO_LATE"}),
    )
    state = await run.handle.result()
    assert state.status == DepositStatus.CREDITED and fake.pushes == 1


async def test_cancel_while_a_lost_push_gets_no_answer_ends_cancelled(start) -> None:
    fake = FakeMpesa(push_errors=[lost_answer()])
    run = await start(fake, MpesaDepositConfig(push_resolve_seconds=1))
    await wait_state(run.handle, lambda s: s.step == DepositStep.RESOLVE_PUSH, "resolving")
    await run.handle.cancel()
    with pytest.raises(WorkflowFailureError) as failure_info:
        await run.handle.result()
    assert isinstance(failure_info.value.cause, CancelledError)
    assert fake.pushes == 1 and fake.statuses()[-1] == DepositStatus.FAILED


async def test_failure_callback_that_daraja_contradicts_does_not_lose_the_payment(start) -> None:
    """A "cancelled" callback while Daraja's query says paid: the payment is credited (query
    confirmed, no receipt) and an alert says so."""
    fake = FakeMpesa(truth=0)
    run = await start(fake, wallet=WALLET)
    await wait_state(run.handle, lambda s: s.step == DepositStep.AWAIT_CALLBACK, "awaiting")
    await run.handle.signal(MpesaDeposit.mpesa_callback, failure(1032, "Request cancelled by user"))
    state = await run.handle.result()
    assert state.status == DepositStatus.CREDITED and state.receipt is None
    assert len(fake.transfers) == 1 and fake.status_queries == 0
    assert len(fake.alerts) == 1 and "says the payment succeeded" in fake.alerts[0].message


SHORTFALL = "treasury holds 0.000000 USDC, needs 1.162790"


async def test_short_treasury_waits_with_an_alert_then_sends_once_when_funded(start) -> None:
    fake = FakeMpesa(treasury_balance=0)
    # short pauses: other tests' orphaned timers can hold the test server's time skipping back
    run = await start(fake, MpesaDepositConfig(treasury_short_initial_interval_seconds=0.2), WALLET)
    await wait_state(
        run.handle, lambda s: s.step == DepositStep.AWAIT_CALLBACK, "awaiting callback"
    )
    await run.handle.signal(MpesaDeposit.mpesa_callback, success())
    waiting = await wait_state(
        run.handle, lambda s: "waiting for the treasury" in (s.error or ""), "waiting"
    )
    assert waiting.status == DepositStatus.SENDING_USDC and waiting.error is not None
    assert waiting.error.endswith(SHORTFALL)
    (alert,) = [a for a in fake.alerts if a.condition == "treasury_low"]
    assert SHORTFALL in alert.message and alert.reference == waiting.deposit_id
    assert DepositStatus.NEEDS_ATTENTION not in fake.statuses() and fake.credits == []
    fake.treasury_balance = 10**9  # funded
    state = await run.handle.result()  # the server skips the backoff timers
    assert state.status == DepositStatus.CREDITED and state.error is None
    assert len(fake.credits) == 1 and fake.credits[0].usdc_tx_hash == "0xmined-1"
    # every attempt used the same key (nothing was signed while short), one alert only
    assert {t.idempotency_key[-1] for t in fake.transfers} == {"1"} and len(fake.transfers) >= 2
    assert len([a for a in fake.alerts if a.condition == "treasury_low"]) == 1


async def test_short_treasury_parks_after_the_bound_and_retry_credits_once(
    start, env: WorkflowEnvironment
) -> None:
    fake = FakeMpesa(treasury_balance=0)
    config = MpesaDepositConfig(
        treasury_short_max_wait_seconds=4,
        treasury_short_initial_interval_seconds=1,
        treasury_short_max_interval_seconds=2,
    )
    run = await start(fake, config, wallet=WALLET)
    await wait_state(
        run.handle, lambda s: s.step == DepositStep.AWAIT_CALLBACK, "awaiting callback"
    )
    await run.handle.signal(MpesaDeposit.mpesa_callback, success())
    parked = await wait_state(
        run.handle,
        lambda s: s.status == DepositStatus.NEEDS_ATTENTION,
        "parked",
        advance=env,
    )
    assert parked.error is not None and parked.error.startswith(
        f"sending USDC failed: TreasuryShort: {SHORTFALL}"
    )
    assert "0x" not in parked.error
    # 1 + 2 + 1 s of backoff: 4 checks, then parked with the reason recorded
    assert len(fake.transfers) == 4 and "(waited 4 s for funds)" in parked.error
    for _ in range(200):  # the park is recorded (row, then search attribute) after the query
        if await settle_status(env.client, run.handle.id) == "needs_attention":
            break
        await asyncio.sleep(0.02)
    assert await settle_status(env.client, run.handle.id) == "needs_attention"
    assert fake.outcomes[-1].status == DepositStatus.NEEDS_ATTENTION
    assert SHORTFALL in (fake.outcomes[-1].failure_reason or "")
    assert fake.credits == []
    fake.treasury_balance = 1_162_790  # exactly enough
    await run.handle.signal(MpesaDeposit.retry)
    state = await run.handle.result()
    assert state.status == DepositStatus.CREDITED
    assert len(fake.credits) == 1 and fake.quotes == 1
    assert {t.idempotency_key[-1] for t in fake.transfers} == {"1"}


async def test_transfer_reverted_for_want_of_usdc_waits_and_sends_a_new_one(start) -> None:
    fake = FakeMpesa(
        confirm_errors=[
            ApplicationError(
                f"{SHORTFALL} (transaction 0xabc (nonce 3) reverted)",
                type="TreasuryShort",
                non_retryable=True,
            )
        ]
    )
    run = await start(fake, MpesaDepositConfig(treasury_short_initial_interval_seconds=0.2), WALLET)
    await wait_state(
        run.handle, lambda s: s.step == DepositStep.AWAIT_CALLBACK, "awaiting callback"
    )
    await run.handle.signal(MpesaDeposit.mpesa_callback, success())
    state = await run.handle.result()
    assert state.status == DepositStatus.CREDITED
    assert [t.idempotency_key[-1] for t in fake.transfers] == ["1", "2"]
    assert [a.condition for a in fake.alerts] == ["treasury_low"]
    assert len(fake.credits) == 1 and fake.credits[0].usdc_tx_hash == "0xmined-2"
