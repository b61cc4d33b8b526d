"""The push activity against its attempt rows on the real database (a stand-in Daraja that
counts prompts): a push is written before it leaves, and a later execution resolves it first."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import ActivityEnvironment

from activities.mpesa import MpesaActivities, PushAttempts
from domain.errors import DarajaPushUnconfirmed, DarajaPushUnknown, DarajaPushUnresolved
from domain.mpesa import (
    DepositOutcomeInput,
    DepositStatus,
    StkCallback,
    StkPushInput,
    StkPushResult,
)
from store import accounts, deposits
from store.models import Alert, MpesaDeposit, MpesaPushAttempt, MpesaUnmatchedPayment


class Daraja:
    """Counts prompts; answers with a new CheckoutRequestID, or loses the answer."""

    def __init__(self, lose: bool = False) -> None:
        self.prompts = 0
        self.lose = lose

    async def access_token(self) -> str:
        return "token"

    async def stk_push(self, **_: Any) -> StkPushResult:
        self.prompts += 1
        if self.lose:
            raise DarajaPushUnknown("answer lost")
        return StkPushResult(
            merchant_request_id=f"m-{self.prompts}", checkout_request_id=f"ws_{uuid.uuid4().hex}"
        )


async def new_deposit(sessions: async_sessionmaker[AsyncSession], phone: str) -> StkPushInput:
    deposit_id = str(uuid.uuid4())
    async with sessions.begin() as session:
        user = await accounts.get_or_create_user(session, "attempts", f"u-{deposit_id[:8]}")
        session.add(
            MpesaDeposit(
                id=deposit_id,
                tenant="attempts",
                user_id=user.id,
                phone=phone,
                amount_minor=4_000,
                currency="KES",
                status=DepositStatus.INITIATED.value,
                workflow_id=f"mpesa-deposit-{deposit_id}",
            )
        )
    return StkPushInput(
        deposit_id=deposit_id,
        phone=phone,
        amount_minor=4_000,
        account_reference="Settle",
        description="deposit",
    )


def activities(
    sessions: async_sessionmaker[AsyncSession], daraja: Daraja, prompt_seconds: float = 90
) -> MpesaActivities:
    store = PushAttempts(sessions, prompt_seconds=prompt_seconds, match_seconds=300)
    return MpesaActivities(daraja, "http://127.0.0.1/cb", attempts=store)  # type: ignore[arg-type]


async def rows(sessions: async_sessionmaker[AsyncSession], deposit_id: str) -> list[Any]:
    async with sessions() as session:
        query = (
            select(MpesaPushAttempt)
            .where(MpesaPushAttempt.deposit_id == deposit_id)
            .order_by(MpesaPushAttempt.attempt)
        )
        return [(r.attempt, r.state, r.checkout_request_id) for r in await session.scalars(query)]


def phone() -> str:
    return f"25471{uuid.uuid4().int % 10**7:07d}"


async def test_a_push_is_recorded_and_a_later_execution_adopts_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    daraja = Daraja()
    request = await new_deposit(sessions, phone())
    env = ActivityEnvironment()
    pushed = await env.run(activities(sessions, daraja).stk_push, request)
    assert await rows(sessions, request.deposit_id) == [(1, "accepted", pushed.checkout_request_id)]
    again = await env.run(activities(sessions, daraja).stk_push, request)
    assert again.adopted and again.checkout_request_id == pushed.checkout_request_id
    assert daraja.prompts == 1


async def test_an_unresolved_push_holds_the_next_one_back_until_its_prompt_expires(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    daraja = Daraja(lose=True)
    request = await new_deposit(sessions, phone())
    env = ActivityEnvironment()
    with pytest.raises(DarajaPushUnknown):
        await env.run(activities(sessions, daraja).stk_push, request)
    assert await rows(sessions, request.deposit_id) == [(1, "unknown", None)]
    daraja.lose = False
    with pytest.raises(DarajaPushUnresolved):
        await env.run(activities(sessions, daraja).stk_push, request)
    assert daraja.prompts == 1
    # once its prompt has expired, the customer may be prompted again
    async with sessions.begin() as session:
        await session.execute(
            update(MpesaPushAttempt)
            .where(MpesaPushAttempt.deposit_id == request.deposit_id)
            .values(created_at=datetime.now(UTC) - timedelta(seconds=91))
        )
    pushed = await env.run(activities(sessions, daraja).stk_push, request)
    assert daraja.prompts == 2 and not pushed.adopted
    assert await rows(sessions, request.deposit_id) == [
        (1, "expired", None),
        (2, "accepted", pushed.checkout_request_id),
    ]


async def test_a_callback_for_a_push_whose_answer_was_lost_is_matched_and_adopted(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The callback route matches the success to the unresolved attempt (same phone and amount,
    soon after); the next execution adopts it, and the workflow's recorder adopts the payment."""
    daraja = Daraja(lose=True)
    number = phone()
    request = await new_deposit(sessions, number)
    env = ActivityEnvironment()
    with pytest.raises(DarajaPushUnknown):
        await env.run(activities(sessions, daraja).stk_push, request)
    callback = StkCallback(
        merchant_request_id="m-cb",
        checkout_request_id=f"ws_cb_{uuid.uuid4().hex[:10]}",
        result_code=0,
        result_desc="ok",
        amount_minor=4_000,
        receipt=f"R{uuid.uuid4().hex[:9].upper()}",
        phone=number,
    )
    async with sessions.begin() as session:
        routing = await deposits.accept_callback(
            session,
            callback,
            "127.0.0.1",
            since=datetime.now(UTC) - timedelta(hours=1),
            match_seconds=300,
        )
    assert routing.deposit is not None and routing.deposit.id == request.deposit_id
    assert routing.unmatched is not None and routing.unmatched.status == "offered"
    adopted = await env.run(activities(sessions, daraja).stk_push, request)
    assert adopted.adopted and adopted.checkout_request_id == callback.checkout_request_id
    assert daraja.prompts == 1
    async with sessions.begin() as session:
        await deposits.record_stk_push(
            session, request.deposit_id, "m-cb", callback.checkout_request_id
        )
    async with sessions() as session:
        payment = await session.scalar(
            select(MpesaUnmatchedPayment).where(
                MpesaUnmatchedPayment.checkout_request_id == callback.checkout_request_id
            )
        )
    assert payment is not None and payment.status == "adopted"


async def test_a_late_callback_for_a_push_given_up_is_open_for_the_deposits_admin(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The measured orphan: the deposit prompted again after the first prompt expired, and the
    first one's payment comes later. It is not the deposit's push any more: an open unmatched
    payment of the deposit's tenant, naming it, with an alert."""
    daraja = Daraja(lose=True)
    number = phone()
    request = await new_deposit(sessions, number)
    env = ActivityEnvironment()
    with pytest.raises(DarajaPushUnknown):
        await env.run(activities(sessions, daraja).stk_push, request)
    async with sessions.begin() as session:
        await session.execute(
            update(MpesaPushAttempt)
            .where(MpesaPushAttempt.deposit_id == request.deposit_id)
            .values(created_at=datetime.now(UTC) - timedelta(seconds=91))
        )
    daraja.lose = False
    pushed = await env.run(activities(sessions, daraja).stk_push, request)
    async with sessions.begin() as session:
        await deposits.record_stk_push(
            session, request.deposit_id, pushed.merchant_request_id, pushed.checkout_request_id
        )
    late = StkCallback(
        merchant_request_id="m-late",
        checkout_request_id=f"ws_late_{uuid.uuid4().hex[:10]}",
        result_code=0,
        result_desc="ok",
        amount_minor=4_000,
        receipt=f"R{uuid.uuid4().hex[:9].upper()}",
        phone=number,
    )
    async with sessions.begin() as session:
        routing = await deposits.accept_callback(
            session,
            late,
            "127.0.0.1",
            since=datetime.now(UTC) - timedelta(hours=1),
            match_seconds=300,
        )
    assert routing.deposit is None and routing.unmatched is not None
    payment = routing.unmatched
    assert payment.status == "open" and payment.deposit_id == request.deposit_id
    assert payment.tenant == "attempts" and "gave its push up" in payment.reason
    async with sessions() as session:
        alert = await session.scalar(
            select(Alert).where(Alert.value == late.checkout_request_id, Alert.status == "open")
        )
    assert alert is not None and alert.tenant == "attempts" and payment.id in alert.message
    assert daraja.prompts == 2


async def test_a_payment_offered_to_a_deposit_that_then_fails_is_opened_with_an_alert(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    daraja = Daraja(lose=True)
    number = phone()
    request = await new_deposit(sessions, number)
    with pytest.raises(DarajaPushUnknown):
        await ActivityEnvironment().run(activities(sessions, daraja).stk_push, request)
    callback = StkCallback(
        merchant_request_id="m-cb",
        checkout_request_id=f"ws_cb_{uuid.uuid4().hex[:10]}",
        result_code=0,
        result_desc="ok",
        amount_minor=4_000,
        receipt=f"R{uuid.uuid4().hex[:9].upper()}",
        phone=number,
    )
    async with sessions.begin() as session:
        routing = await deposits.accept_callback(
            session,
            callback,
            "127.0.0.1",
            since=datetime.now(UTC) - timedelta(hours=1),
            match_seconds=300,
        )
    assert routing.unmatched is not None and routing.unmatched.status == "offered"
    async with sessions.begin() as session:
        await deposits.set_outcome(
            session,
            DepositOutcomeInput(
                deposit_id=request.deposit_id,
                status=DepositStatus.FAILED,
                failure_reason="STK push failed",
            ),
        )
    async with sessions() as session:
        payment = await session.scalar(
            select(MpesaUnmatchedPayment).where(
                MpesaUnmatchedPayment.checkout_request_id == callback.checkout_request_id
            )
        )
        alert = await session.scalar(
            select(Alert).where(Alert.value == callback.checkout_request_id, Alert.status == "open")
        )
    assert payment is not None and payment.status == "open"
    assert "ended failed without it" in payment.reason
    assert alert is not None and alert.tenant == "attempts"


async def test_an_expired_unresolved_push_ends_the_deposit_when_a_second_prompt_is_forbidden(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Issue 14 §1, the remaining double prompt: the answer was lost, no callback came, and the
    prompt has expired. Deposits of the ``mpesa-deposit-no-second-prompt`` patch send nothing
    (the customer may have paid it unseen); the deposit fails, and a late payment for that push
    is an open unmatched payment of the deposit's tenant with an alert, never credited twice."""
    daraja = Daraja(lose=True)
    number = phone()
    request = (await new_deposit(sessions, number)).model_copy(
        update={"prompt_again_after_expiry": False}
    )
    env = ActivityEnvironment()
    with pytest.raises(DarajaPushUnknown):
        await env.run(activities(sessions, daraja).stk_push, request)
    daraja.lose = False
    async with sessions.begin() as session:
        await session.execute(
            update(MpesaPushAttempt)
            .where(MpesaPushAttempt.deposit_id == request.deposit_id)
            .values(created_at=datetime.now(UTC) - timedelta(seconds=91))
        )
    with pytest.raises(DarajaPushUnconfirmed, match="not prompting again"):
        await env.run(activities(sessions, daraja).stk_push, request)
    assert daraja.prompts == 1
    assert await rows(sessions, request.deposit_id) == [(1, "expired", None)]
    # asked again (a retry, a replay): still nothing sent
    with pytest.raises(DarajaPushUnconfirmed):
        await env.run(activities(sessions, daraja).stk_push, request)
    assert daraja.prompts == 1
    async with sessions.begin() as session:  # what the workflow records as it fails
        await deposits.set_outcome(
            session,
            DepositOutcomeInput(
                deposit_id=request.deposit_id,
                status=DepositStatus.FAILED,
                failure_reason="STK push failed: not prompting again",
            ),
        )
    late = StkCallback(
        merchant_request_id="m-late",
        checkout_request_id=f"ws_late_{uuid.uuid4().hex[:10]}",
        result_code=0,
        result_desc="ok",
        amount_minor=4_000,
        receipt=f"R{uuid.uuid4().hex[:9].upper()}",
        phone=number,
    )
    async with sessions.begin() as session:
        routing = await deposits.accept_callback(
            session,
            late,
            "127.0.0.1",
            since=datetime.now(UTC) - timedelta(hours=1),
            match_seconds=300,
        )
    assert routing.deposit is None and routing.unmatched is not None
    assert routing.unmatched.status == "open"
    async with sessions() as session:
        alert = await session.scalar(
            select(Alert).where(Alert.value == late.checkout_request_id, Alert.status == "open")
        )
    assert alert is not None and alert.tenant == "attempts"
