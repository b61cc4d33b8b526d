"""The handoff of an early M-Pesa callback between the callback route and the recorder, on the
real PostgreSQL database: whichever order their transactions take, exactly one of them delivers
the callback (``store.deposits.record_stk_push`` states the invariant)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.mpesa import DepositStatus, StkCallback
from store import accounts, deposits, unmatched_payments
from store.models import Alert, MpesaDeposit

PHONE = "254712340042"
MATCH = {"match_seconds": 300.0}


async def open_deposit(sessions: async_sessionmaker[AsyncSession], amount_minor: int) -> str:
    async with sessions.begin() as session:
        user = await accounts.get_or_create_user(session, "handoff", f"u-{uuid.uuid4().hex[:8]}")
        deposit_id = str(uuid.uuid4())
        session.add(
            MpesaDeposit(
                id=deposit_id,
                tenant="handoff",
                user_id=user.id,
                phone=PHONE,
                amount_minor=amount_minor,
                currency="KES",
                status=DepositStatus.INITIATED.value,
                workflow_id=f"mpesa-deposit-{deposit_id}",
            )
        )
    return deposit_id


def success(checkout: str, amount_minor: int) -> StkCallback:
    return StkCallback(
        merchant_request_id="1-2-3",
        checkout_request_id=checkout,
        result_code=0,
        result_desc="The service request is processed successfully.",
        amount_minor=amount_minor,
        receipt=f"R{uuid.uuid4().hex[:9].upper()}",
        phone=PHONE,
    )


def since() -> datetime:
    return datetime.now(UTC) - timedelta(hours=1)


async def open_unmatched_alerts(sessions: async_sessionmaker[AsyncSession], checkout: str) -> int:
    async with sessions() as session:
        rows = await session.execute(
            select(Alert).where(
                Alert.condition == deposits.UNMATCHED_CALLBACK_ALERT,
                Alert.value == checkout,
                Alert.status == "open",
            )
        )
        return len(list(rows.scalars()))


async def test_recorder_holding_its_transaction_makes_the_callback_route_find_the_deposit(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    amount = 4_200 + uuid.uuid4().int % 1000 * 100
    deposit_id = await open_deposit(sessions, amount)
    checkout = f"ws_CO_handoff_{uuid.uuid4().hex[:12]}"
    async with sessions.begin() as recorder:
        early = await deposits.record_stk_push(recorder, deposit_id, "1-2-3", checkout)
        assert early is None

        async def route() -> deposits.CallbackRouting:
            async with sessions.begin() as session:
                return await deposits.accept_callback(
                    session, success(checkout, amount), "127.0.0.1", since=since(), **MATCH
                )

        callback = asyncio.create_task(route())
        await asyncio.sleep(0.5)
        assert not callback.done(), "the route must wait for the recorder's commit"
    routing = await asyncio.wait_for(callback, timeout=10)
    assert routing.deposit is not None and routing.deposit.id == deposit_id
    assert routing.unmatched is None


async def test_a_callback_kept_first_is_handed_over_by_the_recorder_and_its_alert_cleared(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    amount = 5_300 + uuid.uuid4().int % 1000 * 100
    first = await open_deposit(sessions, amount)
    await open_deposit(sessions, amount)  # same phone and amount: the offer is ambiguous
    checkout = f"ws_CO_handoff_{uuid.uuid4().hex[:12]}"
    callback = success(checkout, amount)
    async with sessions.begin() as session:
        routing = await deposits.accept_callback(
            session, callback, "127.0.0.1", since=since(), **MATCH
        )
        assert routing.first and routing.deposit is None
        assert routing.unmatched is not None and routing.unmatched.status == "open"
        assert "2 deposits" in routing.unmatched.reason
    # the unmatched payment's alert, raised in the callback's transaction
    assert await open_unmatched_alerts(sessions, checkout) == 1
    async with sessions.begin() as session:
        early = await deposits.record_stk_push(session, first, "1-2-3", checkout)
    assert early == callback
    assert await open_unmatched_alerts(sessions, checkout) == 0
    async with sessions() as session:
        payment = await unmatched_payments.by_checkout(session, checkout)
    assert payment is not None and payment.status == "adopted" and payment.deposit_id == first
    # a duplicate from Daraja now finds the deposit
    async with sessions.begin() as session:
        again = await deposits.accept_callback(
            session, callback, "127.0.0.1", since=since(), **MATCH
        )
    assert not again.first and again.deposit is not None and again.deposit.id == first


async def test_the_lock_key_is_stable_and_64_bit() -> None:
    key = deposits.checkout_lock_key("ws_CO_1")
    assert key == deposits.checkout_lock_key("ws_CO_1") != deposits.checkout_lock_key("ws_CO_2")
    assert -(2**63) <= key < 2**63
