"""TicketPurchase, Refund and NftTransfer on the time-skipping server with mocked activities."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment

from domain.nft import (
    BurnTicketInput,
    FreezeTicketInput,
    MintTicketInput,
    MintTicketResult,
    TicketOwnerInput,
    TicketOwnerResult,
    TicketTxResult,
    TransferTicketInput,
    TransferTicketResult,
)
from domain.queues import ActivityQueue
from domain.tickets import (
    CancelPaymentInput,
    EmailInput,
    MintOutcome,
    MintOutcomeInput,
    NftTransferInput,
    PayInput,
    PaymentCapturedInput,
    PaymentCapturedResult,
    PayResult,
    PurchaseStatus,
    PurchaseUpdate,
    RecordOutcomeInput,
    RefundInput,
    RefundSettledInput,
    ReservedRefund,
    ReserveRefundInput,
    RetrievePaymentInput,
    RetrieveRefundInput,
    StripeEventSignal,
    StripeRefundInput,
    StripeRefundResult,
    TicketConfig,
    TicketPurchaseInput,
    TransferRecordInput,
    WebhookInput,
    WebhookResult,
)
from tests.fixtures.temporal import new_prefix, running_workers, start_time_skipping
from workflows.tickets import NftTransfer, Refund, TicketPurchase

BUYER = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"
OTHER = "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T"


def permanent(kind: str, message: str) -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


@dataclass
class Fakes:
    pay_status: str = "succeeded"
    pay_error: Exception | None = None
    #: the first payment calls fail as when Stripe's answer is lost (the charge may have happened)
    pay_failures: int = 0
    retrieve_status: str = "requires_action"
    mint_error: Exception | None = None
    refund_failures: int = 0
    reserve_error: Exception | None = None
    full_refund: bool = True
    owner: str | None = BUYER
    #: None: payment_captured answers nothing (as before holds could expire)
    place_kept: bool | None = None
    #: what Stripe answers a refund with
    refund_status: str = "succeeded"
    #: answers for the first refunds, before ``refund_status``
    refund_statuses: list[str] = field(default_factory=list)
    #: what retrieving a refund says
    refund_later: str = "pending"
    #: the mint waits for this (set it to let the mint finish)
    mint_gate: asyncio.Event | None = None
    #: successive answers of tickets.mint_outcome
    mint_outcomes: list[MintOutcome] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    emails: list[EmailInput] = field(default_factory=list)
    updates: list[PurchaseUpdate] = field(default_factory=list)
    refunds: list[StripeRefundInput] = field(default_factory=list)
    settled: list[RefundSettledInput] = field(default_factory=list)

    def activities(self) -> dict[ActivityQueue, list[Any]]:
        fake = self

        @activity.defn(name="stripe.pay")
        async def pay(request: PayInput) -> PayResult:
            fake.calls.append(f"pay:{request.idempotency_key}")
            if len([c for c in fake.calls if c.startswith("pay:")]) <= fake.pay_failures:
                raise ApplicationError("create payment: connection lost", type="StripeUnavailable")
            if fake.pay_error:
                raise fake.pay_error
            return PayResult(payment_intent="pi_1", status=fake.pay_status, amount_received=2500)

        @activity.defn(name="stripe.retrieve")
        async def retrieve(request: RetrievePaymentInput) -> PayResult:
            fake.calls.append("retrieve")
            return PayResult(
                payment_intent=request.payment_intent,
                status=fake.retrieve_status,
                amount_received=0,
            )

        @activity.defn(name="stripe.cancel")
        async def cancel(request: CancelPaymentInput) -> PayResult:
            fake.calls.append("cancel")
            return PayResult(
                payment_intent=request.payment_intent, status="canceled", amount_received=0
            )

        @activity.defn(name="stripe.refund")
        async def refund(request: StripeRefundInput) -> StripeRefundResult:
            fake.refunds.append(request)
            if len(fake.refunds) <= fake.refund_failures:
                raise RuntimeError("stripe down")
            return StripeRefundResult(
                refund_id=f"re_{len(fake.refunds)}",
                amount_minor=request.amount_minor or 2500,
                status=fake.refund_statuses.pop(0) if fake.refund_statuses else fake.refund_status,
            )

        @activity.defn(name="stripe.retrieve_refund")
        async def retrieve_refund(request: RetrieveRefundInput) -> StripeRefundResult:
            fake.calls.append("retrieve_refund")
            return StripeRefundResult(
                refund_id=request.refund_id, amount_minor=2500, status=fake.refund_later
            )

        @activity.defn(name="solana.mint_ticket")
        async def mint_ticket(request: MintTicketInput) -> MintTicketResult:
            fake.calls.append("mint")
            if fake.mint_gate is not None:
                await fake.mint_gate.wait()
            if fake.mint_error:
                raise fake.mint_error
            return MintTicketResult(mint="Mint111", token_account="Ata111", signature="sig")

        @activity.defn(name="solana.ticket_owner")
        async def ticket_owner(request: TicketOwnerInput) -> TicketOwnerResult:
            return TicketOwnerResult(owner=fake.owner)

        @activity.defn(name="solana.transfer_ticket")
        async def transfer_ticket(request: TransferTicketInput) -> TransferTicketResult:
            fake.calls.append(f"transfer:{request.to_owner}")
            return TransferTicketResult(signature="sig2", to_token_account="Ata222")

        @activity.defn(name="solana.freeze_ticket")
        async def freeze_ticket(request: FreezeTicketInput) -> TicketTxResult:
            fake.calls.append("freeze")
            return TicketTxResult(signature="sig3")

        @activity.defn(name="solana.burn_ticket")
        async def burn_ticket(request: BurnTicketInput) -> TicketTxResult:
            fake.calls.append("burn")
            return TicketTxResult(signature="sig4")

        @activity.defn(name="notify.email")
        async def email(request: EmailInput) -> bool:
            fake.emails.append(request)
            return True

        @activity.defn(name="notify.webhook")
        async def webhook(request: WebhookInput) -> WebhookResult:
            fake.calls.append(f"webhook:{request.event_type}")
            return WebhookResult(delivered=1)

        @activity.defn(name="notify.record")
        async def record(outcome: RecordOutcomeInput) -> None:
            return None

        @activity.defn(name="tickets.payment_captured")
        async def payment_captured(captured: PaymentCapturedInput) -> PaymentCapturedResult | None:
            fake.calls.append("captured")
            if fake.place_kept is None:
                return None
            return PaymentCapturedResult(place_kept=fake.place_kept)

        @activity.defn(name="tickets.mint_outcome")
        async def mint_outcome(request: MintOutcomeInput) -> MintOutcome:
            fake.calls.append("mint_outcome")
            if len(fake.mint_outcomes) > 1:
                return fake.mint_outcomes.pop(0)
            return fake.mint_outcomes[0]

        @activity.defn(name="tickets.update")
        async def update(change: PurchaseUpdate) -> str:
            fake.updates.append(change)
            return change.status.value

        @activity.defn(name="tickets.reserve_refund")
        async def reserve_refund(request: ReserveRefundInput) -> ReservedRefund:
            if fake.reserve_error:
                raise fake.reserve_error
            amount = request.amount_minor or 2500
            return ReservedRefund(
                refund_id=request.refund_id,
                amount_minor=amount,
                payment_intent="pi_1",
                currency="usd",
                full=fake.full_refund,
            )

        @activity.defn(name="tickets.settle_refund")
        async def settle_refund(settled: RefundSettledInput) -> None:
            fake.settled.append(settled)

        @activity.defn(name="tickets.record_transfer")
        async def record_transfer(change: TransferRecordInput) -> None:
            fake.calls.append(f"record-transfer:{change.status}")

        return {
            ActivityQueue.STRIPE: [pay, retrieve, cancel, refund, retrieve_refund],
            ActivityQueue.SOLANA: [
                mint_ticket,
                ticket_owner,
                transfer_ticket,
                freeze_ticket,
                burn_ticket,
            ],
            ActivityQueue.NOTIFY: [email, webhook, record],
            ActivityQueue.DB: [
                payment_captured,
                update,
                reserve_refund,
                settle_refund,
                record_transfer,
                mint_outcome,
            ],
        }


@pytest.fixture
def env(time_skipping_env: WorkflowEnvironment) -> WorkflowEnvironment:
    return time_skipping_env


def purchase_input(prefix: str, **config: Any) -> TicketPurchaseInput:
    return TicketPurchaseInput(
        purchase_id=str(uuid.uuid4()),
        tenant="t",
        user_id="u",
        subject="s",
        event_id="evt",
        seat="A1",
        amount_minor=2500,
        currency="usd",
        payment_method="pm_card_visa",
        buyer_email="b@example.com",
        buyer_wallet=BUYER,
        metadata_uri="https://x/t.json",
        task_queue_prefix=prefix,
        config=TicketConfig(admin_emails=["ops@example.com"], **config),
    )


async def run_purchase(
    env: WorkflowEnvironment, fakes: Fakes, drive: Any = None, **config: Any
) -> Any:
    prefix = new_prefix()
    async with running_workers(
        env.client, prefix, workflows=[TicketPurchase], activities=fakes.activities()
    ):
        request = purchase_input(prefix, **config)
        handle = await env.client.start_workflow(
            TicketPurchase.run,
            request,
            id=f"ticket-purchase-{request.purchase_id}",
            task_queue=f"{prefix}workflows",
        )
        if drive:
            await drive(handle)
        return await handle.result()


async def test_purchase_pays_mints_and_notifies(env: WorkflowEnvironment) -> None:
    fakes = Fakes()
    state = await run_purchase(env, fakes)
    assert state.status == PurchaseStatus.COMPLETED and state.mint == "Mint111"
    assert fakes.calls[0].startswith("pay:ticket-purchase-") and fakes.calls[0].endswith(":payment")
    assert (
        fakes.calls.index("captured")
        < fakes.calls.index("mint")
        < fakes.calls.index("webhook:ticket.purchased")
    )
    assert [e.template for e in fakes.emails] == ["payment_confirmation", "nft_minted"]


async def test_declined_card_fails_fast(env: WorkflowEnvironment) -> None:
    fakes = Fakes(pay_error=permanent("CardDeclined", "Your card was declined."))
    state = await run_purchase(env, fakes)
    assert state.status == PurchaseStatus.PAYMENT_FAILED and "declined" in state.failure_reason
    assert "mint" not in fakes.calls and [c for c in fakes.calls if c.startswith("pay")] == [
        fakes.calls[0]
    ]
    assert fakes.updates[-1].release_seat


async def test_a_payment_whose_answers_are_lost_is_asked_again_until_stripe_answers(
    env: WorkflowEnvironment,
) -> None:
    """More lost answers than the old 8 attempts: the purchase never ends failed with the card
    perhaps charged; every attempt is the same Stripe request (one Idempotency-Key)."""
    fakes = Fakes(pay_failures=12)
    state = await run_purchase(env, fakes)
    assert state.status == PurchaseStatus.COMPLETED and state.payment_intent == "pi_1"
    pays = [c for c in fakes.calls if c.startswith("pay:")]
    assert len(pays) == 13 and len(set(pays)) == 1
    assert all(u.status != PurchaseStatus.PAYMENT_FAILED for u in fakes.updates)


async def test_authentication_finished_by_the_webhook(env: WorkflowEnvironment) -> None:
    fakes = Fakes(pay_status="requires_action")

    async def authenticate(handle: Any) -> None:
        for _ in range(200):
            if (await handle.query(TicketPurchase.status)).status == PurchaseStatus.REQUIRES_ACTION:
                break
            await asyncio.sleep(0.02)
        await handle.signal(
            TicketPurchase.stripe_event,
            StripeEventSignal(
                event_id="evt_1", type="payment_intent.succeeded", payment_intent="pi_1"
            ),
        )

    state = await run_purchase(env, fakes, authenticate)
    assert state.status == PurchaseStatus.COMPLETED


async def test_authentication_never_finished_cancels_the_intent(env: WorkflowEnvironment) -> None:
    fakes = Fakes(pay_status="requires_action")
    state = await run_purchase(env, fakes)  # the 15 min wait is skipped
    assert state.status == PurchaseStatus.PAYMENT_FAILED
    assert fakes.calls[-2:] == ["retrieve", "cancel"] or (
        "retrieve" in fakes.calls and "cancel" in fakes.calls
    )
    assert "mint" not in fakes.calls


async def test_mint_that_can_never_succeed_is_compensated(env: WorkflowEnvironment) -> None:
    fakes = Fakes(mint_error=permanent("SolanaRejected", "custom program error: 0x0"))
    with pytest.raises(WorkflowFailureError) as failure:
        await run_purchase(env, fakes)
    assert (
        isinstance(failure.value.cause, ApplicationError)
        and failure.value.cause.type == "TicketMintFailed"
    )
    assert len(fakes.refunds) == 1 and fakes.refunds[0].amount_minor == 2500
    assert fakes.settled[-1].succeeded
    assert fakes.updates[-1].status == PurchaseStatus.REFUNDED and fakes.updates[-1].release_seat
    templates = [(e.template, e.to) for e in fakes.emails]
    assert ("refund_confirmation", "b@example.com") in templates and (
        "admin_alert",
        "ops@example.com",
    ) in templates


async def test_a_refund_that_keeps_failing_parks_until_retried(env: WorkflowEnvironment) -> None:
    fakes = Fakes(mint_error=permanent("SolanaRejected", "no"), refund_failures=10)

    async def retry_when_parked(handle: Any) -> None:
        for _ in range(500):
            if (await handle.query(TicketPurchase.status)).status == PurchaseStatus.NEEDS_ATTENTION:
                break
            await env.sleep(30)
        fakes.refund_failures = 0
        await handle.signal(TicketPurchase.retry)

    with pytest.raises(WorkflowFailureError):
        await run_purchase(env, fakes, retry_when_parked)
    assert fakes.settled[-1].succeeded and len(fakes.refunds) == 11


def refund_input(
    prefix: str,
    amount: int | None,
    mint: str | None = "Mint111",
    void_ticket: bool = False,
    **config: Any,
) -> RefundInput:
    return RefundInput(
        refund_id=str(uuid.uuid4()),
        purchase_id="p",
        tenant="t",
        amount_minor=amount,
        requested_by="s",
        buyer_email="b@example.com",
        event_id="evt",
        seat="A1",
        mint=mint,
        void_ticket=void_ticket,
        task_queue_prefix=prefix,
        config=TicketConfig(**config),
    )


async def run_refund(
    env: WorkflowEnvironment,
    fakes: Fakes,
    amount: int | None,
    drive: Any = None,
    mint: str | None = "Mint111",
    void_ticket: bool = False,
    **config: Any,
) -> Any:
    prefix = new_prefix()
    async with running_workers(
        env.client, prefix, workflows=[Refund], activities=fakes.activities()
    ):
        request = refund_input(prefix, amount, mint, void_ticket, **config)
        handle = await env.client.start_workflow(
            Refund.run, request, id=f"refund-{request.refund_id}", task_queue=f"{prefix}workflows"
        )
        if drive:
            await drive(handle)
        return await handle.result()


async def test_full_refund_freezes_the_ticket(env: WorkflowEnvironment) -> None:
    fakes = Fakes(full_refund=True)
    state = await run_refund(env, fakes, None, full_refund_action="freeze")
    assert state.status == "succeeded" and state.nft_action == "frozen" and "freeze" in fakes.calls
    assert fakes.refunds[0].idempotency_key == f"refund:{state.refund_id}"


async def test_partial_refund_leaves_the_ticket(env: WorkflowEnvironment) -> None:
    fakes = Fakes(full_refund=False)
    state = await run_refund(env, fakes, 1000, full_refund_action="burn")
    assert state.status == "succeeded" and state.nft_action is None and "burn" not in fakes.calls


async def test_refund_above_what_is_left_is_refused(env: WorkflowEnvironment) -> None:
    fakes = Fakes(reserve_error=permanent("RefundRefused", "at most 0 is left"))
    state = await run_refund(env, fakes, 5000)
    assert state.status == "refused" and fakes.refunds == []


async def run_transfer(env: WorkflowEnvironment, fakes: Fakes) -> Any:
    prefix = new_prefix()
    async with running_workers(
        env.client, prefix, workflows=[NftTransfer], activities=fakes.activities()
    ):
        request = NftTransferInput(
            transfer_id=str(uuid.uuid4()),
            purchase_id="p",
            tenant="t",
            mint="Mint111",
            from_wallet=BUYER,
            to_wallet=OTHER,
            buyer_email="b@example.com",
            event_id="evt",
            seat="A1",
            task_queue_prefix=prefix,
        )
        return await env.client.execute_workflow(
            NftTransfer.run,
            request,
            id=f"nft-transfer-{request.transfer_id}",
            task_queue=f"{prefix}workflows",
        )


async def test_transfer_checks_the_owner_first(env: WorkflowEnvironment) -> None:
    refused = Fakes(owner="SomeoneElse111")
    state = await run_transfer(env, refused)
    assert state.status == "refused" and not any(c.startswith("transfer:") for c in refused.calls)
    allowed = Fakes()
    state = await run_transfer(env, allowed)
    assert (
        state.status == "transferred"
        and f"transfer:{OTHER}" in allowed.calls
        and "webhook:ticket.transferred" in allowed.calls
    )


async def until_status(handle: Any, query: Any, check: Any) -> Any:
    for _ in range(500):
        state = await handle.query(query)
        if check(state):
            return state
        await asyncio.sleep(0.02)
    raise AssertionError("the workflow never got there")


async def test_a_late_payment_for_a_lost_place_is_refunded_and_not_minted(
    env: WorkflowEnvironment,
) -> None:
    fakes = Fakes(place_kept=False)
    state = await run_purchase(env, fakes)
    assert (
        state.status == PurchaseStatus.REFUNDED and "sold to another buyer" in state.failure_reason
    )
    assert "mint" not in fakes.calls and len(fakes.refunds) == 1
    assert fakes.updates[-1].release_seat


async def test_authentication_timeout_releases_the_seat(env: WorkflowEnvironment) -> None:
    fakes = Fakes(pay_status="requires_action")
    state = await run_purchase(env, fakes)
    assert state.status == PurchaseStatus.PAYMENT_FAILED and fakes.updates[-1].release_seat


async def test_cancel_while_authenticating_cancels_the_intent_and_frees_the_seat(
    env: WorkflowEnvironment,
) -> None:
    fakes = Fakes(pay_status="requires_action")

    async def cancel(handle: Any) -> None:
        await until_status(
            handle, TicketPurchase.status, lambda s: s.status == PurchaseStatus.REQUIRES_ACTION
        )
        await handle.cancel()

    with pytest.raises(WorkflowFailureError) as failure:
        await run_purchase(env, fakes, cancel)
    assert isinstance(failure.value.cause, CancelledError)
    assert "cancel" in fakes.calls and "mint" not in fakes.calls and fakes.refunds == []
    assert fakes.updates[-1].status == PurchaseStatus.CANCELLED and fakes.updates[-1].release_seat


async def test_cancel_during_the_mint_refunds_and_retires_the_nft(env: WorkflowEnvironment) -> None:
    fakes = Fakes(mint_gate=asyncio.Event())

    async def cancel(handle: Any) -> None:
        await until_status(
            handle, TicketPurchase.status, lambda s: s.status == PurchaseStatus.MINTING
        )
        await handle.cancel()
        await asyncio.sleep(0.2)
        assert fakes.refunds == []  # the mint is not cut in half
        assert fakes.mint_gate is not None
        fakes.mint_gate.set()

    with pytest.raises(WorkflowFailureError) as failure:
        await run_purchase(env, fakes, cancel)
    assert isinstance(failure.value.cause, CancelledError)
    assert fakes.calls.index("mint") < fakes.calls.index("freeze")
    assert len(fakes.refunds) == 1 and fakes.refunds[0].amount_minor == 2500
    assert fakes.updates[-1].status == PurchaseStatus.CANCELLED and fakes.updates[-1].release_seat
    assert "webhook:ticket.purchased" not in fakes.calls


async def test_partial_refund_that_voids_the_ticket_freezes_it(env: WorkflowEnvironment) -> None:
    fakes = Fakes(full_refund=False)
    state = await run_refund(env, fakes, 1000, void_ticket=True, full_refund_action="freeze")
    assert state.status == "succeeded" and state.nft_action == "frozen"
    assert fakes.settled[-1].void_ticket


async def test_full_refund_during_the_mint_waits_for_it_then_freezes(
    env: WorkflowEnvironment,
) -> None:
    fakes = Fakes(
        full_refund=True,
        mint_outcomes=[
            MintOutcome(status="minting", mint=None),
            MintOutcome(status="minting", mint=None),
            MintOutcome(status="completed", mint="Mint777"),
        ],
    )
    state = await run_refund(env, fakes, None, mint=None)
    assert state.nft_action == "frozen" and fakes.calls.count("mint_outcome") == 3
    assert fakes.calls.index("mint_outcome") < fakes.calls.index("freeze")
    assert fakes.updates[-1].status == PurchaseStatus.REFUNDED


async def test_full_refund_when_the_mint_failed_retires_nothing(env: WorkflowEnvironment) -> None:
    fakes = Fakes(full_refund=True, mint_outcomes=[MintOutcome(status="refunded", mint=None)])
    state = await run_refund(env, fakes, None, mint=None)
    assert state.status == "succeeded" and state.nft_action is None and "freeze" not in fakes.calls


async def test_a_pending_stripe_refund_waits_for_its_webhook(env: WorkflowEnvironment) -> None:
    fakes = Fakes(refund_status="pending", full_refund=False)

    async def webhook(handle: Any) -> None:
        waiting = await until_status(
            handle, Refund.status, lambda s: s.status == "waiting_for_stripe"
        )
        assert fakes.settled == []  # not done while pending
        await handle.signal(
            Refund.stripe_event,
            StripeEventSignal(
                event_id="evt_r", type="refund.updated", status="succeeded",
                refund=waiting.stripe_refund_id,
            ),
        )  # fmt: skip

    state = await run_refund(env, fakes, 1000, webhook)
    assert state.status == "succeeded" and fakes.settled[-1].succeeded


async def test_a_pending_refund_without_webhook_asks_stripe(env: WorkflowEnvironment) -> None:
    fakes = Fakes(refund_status="pending", refund_later="succeeded", full_refund=False)
    state = await run_refund(env, fakes, 1000)  # the hour's wait is skipped
    assert state.status == "succeeded" and "retrieve_refund" in fakes.calls


async def test_a_failed_stripe_refund_parks_then_abandon_releases(env: WorkflowEnvironment) -> None:
    fakes = Fakes(refund_status="pending", refund_later="failed", full_refund=False)

    async def abandon(handle: Any) -> None:
        await until_status(handle, Refund.status, lambda s: s.status == "waiting_for_stripe")
        await env.sleep(3700)  # no webhook within the hour: Stripe is asked
        await until_status(handle, Refund.status, lambda s: s.status == "needs_attention")
        assert fakes.settled == []
        await handle.signal(Refund.abandon, "refunded by bank transfer")

    state = await run_refund(env, fakes, 1000, abandon)
    assert state.status == "failed" and not fakes.settled[-1].succeeded
    assert fakes.settled[-1].failure_reason == "refunded by bank transfer"


async def test_cancelling_a_parked_refund_releases_its_reservation(
    env: WorkflowEnvironment,
) -> None:
    fakes = Fakes(refund_status="pending", refund_later="failed", full_refund=False)

    async def cancel(handle: Any) -> None:
        await until_status(handle, Refund.status, lambda s: s.status == "waiting_for_stripe")
        await env.sleep(3700)  # no webhook within the hour: Stripe is asked
        await until_status(handle, Refund.status, lambda s: s.status == "needs_attention")
        await handle.cancel()

    with pytest.raises(WorkflowFailureError) as failure:
        await run_refund(env, fakes, 1000, cancel)
    assert isinstance(failure.value.cause, CancelledError)
    assert not fakes.settled[-1].succeeded and len(fakes.settled) == 1


async def test_cancelling_a_refund_stripe_is_processing_is_refused(
    env: WorkflowEnvironment,
) -> None:
    fakes = Fakes(refund_status="pending", refund_later="succeeded", full_refund=False)

    async def cancel(handle: Any) -> None:
        await until_status(handle, Refund.status, lambda s: s.status == "waiting_for_stripe")
        await handle.cancel()

    state = await run_refund(env, fakes, 1000, cancel)
    assert state.status == "succeeded" and fakes.settled[-1].succeeded


async def test_a_compensating_refund_stripe_fails_parks_and_retry_refunds_anew(
    env: WorkflowEnvironment,
) -> None:
    fakes = Fakes(
        mint_error=permanent("SolanaRejected", "no"),
        refund_statuses=["pending"],
        refund_later="failed",
    )

    async def retry_when_parked(handle: Any) -> None:
        for _ in range(100):
            if (await handle.query(TicketPurchase.status)).status == PurchaseStatus.NEEDS_ATTENTION:
                break
            await env.sleep(600)
        assert fakes.settled == []  # nothing recorded as refunded while Stripe said no
        await handle.signal(TicketPurchase.retry)

    with pytest.raises(WorkflowFailureError):
        await run_purchase(env, fakes, retry_when_parked)
    assert [r.idempotency_key.rsplit(":", 1)[-1] for r in fakes.refunds] == ["refund", "2"]
    assert fakes.settled[-1].succeeded and fakes.settled[-1].stripe_refund_id == "re_2"


HISTORIES = Path(__file__).resolve().parents[1] / "histories"


async def _record() -> None:
    """Ticket histories of today's shape, for the replay test (never re-recorded)."""
    env = await start_time_skipping()
    async with env:
        purchases: list[tuple[str, Fakes, Any]] = [
            ("v1_completed", Fakes(), None),
            ("v1_mint_failed_refunded", Fakes(mint_error=permanent("SolanaRejected", "no")), None),
            ("v1_cancelled_while_authenticating", Fakes(pay_status="requires_action"), "3ds"),
            # v2: paid, minted and failed pushed as events ("ticket-purchase-events")
            ("v2_events_completed", Fakes(), None),
            ("v2_events_mint_failed_refunded", Fakes(mint_error=permanent("SolanaRejected", "no")), None),
            # v3: bookkeeping as local activities first ("bookkeeping-local-first")
            ("v3_local_bookkeeping_completed", Fakes(), None),
            ("v3_local_bookkeeping_mint_failed_refunded", Fakes(mint_error=permanent("SolanaRejected", "no")), None),
        ]  # fmt: skip
        for name, fakes, cancel in purchases:
            path = HISTORIES / "ticket_purchase" / f"{name}.json"
            if path.exists():  # histories are never re-recorded
                print(f"kept {path}")
                continue
            prefix = new_prefix()
            async with running_workers(
                env.client, prefix, workflows=[TicketPurchase], activities=fakes.activities()
            ):
                request = purchase_input(prefix)
                handle = await env.client.start_workflow(
                    TicketPurchase.run,
                    request,
                    id=f"ticket-purchase-{request.purchase_id}",
                    task_queue=f"{prefix}workflows",
                )
                if cancel:
                    await until_status(
                        handle,
                        TicketPurchase.status,
                        lambda s: s.status == PurchaseStatus.REQUIRES_ACTION,
                    )
                    await handle.cancel()
                with contextlib.suppress(WorkflowFailureError):
                    await handle.result()
                history = await handle.fetch_history()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(history.to_json())
            print(f"wrote {path}")
        refunds: list[tuple[str, Fakes, int | None, bool]] = [
            ("v1_full_refund_frozen", Fakes(full_refund=True), None, False),
            ("v1_pending_then_stripe_asked", Fakes(refund_status="pending", refund_later="succeeded", full_refund=False), 1000, False),
            ("v1_full_refund_waited_for_mint", Fakes(full_refund=True, mint_outcomes=[MintOutcome(status="minting", mint=None), MintOutcome(status="completed", mint="Mint777")]), None, True),
            # v2: the settled refund pushed as ticket.refunded ("refund-events")
            ("v2_events_full_refund_frozen", Fakes(full_refund=True), None, False),
            # v3: bookkeeping as local activities first ("bookkeeping-local-first")
            ("v3_local_bookkeeping_full_refund_frozen", Fakes(full_refund=True), None, False),
        ]  # fmt: skip
        for name, fakes, amount, minting in refunds:
            path = HISTORIES / "refund" / f"{name}.json"
            if path.exists():  # histories are never re-recorded
                print(f"kept {path}")
                continue
            prefix = new_prefix()
            async with running_workers(
                env.client, prefix, workflows=[Refund], activities=fakes.activities()
            ):
                refund = refund_input(prefix, amount, None if minting else "Mint111")
                refund_handle = await env.client.start_workflow(
                    Refund.run,
                    refund,
                    id=f"refund-{refund.refund_id}",
                    task_queue=f"{prefix}workflows",
                )
                await refund_handle.result()
                history = await refund_handle.fetch_history()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(history.to_json())
            print(f"wrote {path}")


if __name__ == "__main__":
    asyncio.run(_record())
