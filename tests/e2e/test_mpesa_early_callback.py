"""A callback that races the recording of its CheckoutRequestID is delivered exactly once.

The recorder (``deposits.record_stk_push``, run by the worker after Daraja accepted the push) and
the API's callback route run in separate transactions. They are serialized on the
CheckoutRequestID's advisory lock, so either the recorder finds the kept callback or the route
finds the recorded CheckoutRequestID: the workflow never waits out the callback timeout for a
callback Settle received (``store.deposits.record_stk_push`` explains the invariant).

Whether the callback reached the workflow shows in the outcome: a callback carries the M-Pesa
receipt, which Transaction Status then confirms; a deposit confirmed only by STK Push Query
(the workflow's fallback when no callback came) has no receipt.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.mpesa import DepositStatus, MpesaDepositState
from store import deposits
from store.models import MpesaDeposit
from tests.e2e.test_mpesa_deposit_api import PHONE_NO_CALLBACK, initiate
from tests.e2e.test_mpesa_trust import open_alerts, sandbox_body
from tests.fixtures.stack import Stack, eventually, unique_tenant

pytestmark = pytest.mark.usefixtures("balanced_ledger")


def unique_amount(low: int, high: int) -> int:
    """An amount no other test's deposit has, so lost-push candidates are only this test's."""
    return low + secrets.randbelow(high - low)


async def advisory_lock_waiters(stack: Stack) -> int:
    async with stack.sessions() as session:
        query = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        return int((await session.execute(query)).scalar_one())


async def final_state(stack: Stack, workflow_id: str) -> MpesaDepositState:
    state: MpesaDepositState = await asyncio.wait_for(
        stack.deposit_handle(workflow_id).result(), timeout=60
    )
    return state


def delivered_by_callback(state: MpesaDepositState) -> bool:
    """The callback reached the workflow: its receipt was confirmed by Transaction Status."""
    return state.receipt is not None and "transaction_status" in state.confirmed_by


async def test_callback_while_the_recorder_is_between_its_read_and_its_commit(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interleaving of the benchmark: the recorder has written the CheckoutRequestID and
    looked for a kept callback (none yet) but not committed; the callback arrives through the
    API meanwhile. Two open deposits with the same phone and amount make the lost-push offer
    ambiguous, so only the recorder/route handoff can deliver it."""
    amount = unique_amount(20, 400)
    held: dict[str, str] = {}  # deposit id -> CheckoutRequestID, for recorders held open
    both_held = asyncio.Event()
    release = asyncio.Event()
    record = deposits.record_stk_push

    async def record_then_hold(
        session: AsyncSession, deposit_id: str, merchant_request_id: str, checkout: str
    ) -> Any:
        early = await record(session, deposit_id, merchant_request_id, checkout)
        row = await session.get(MpesaDeposit, deposit_id)
        if row is not None and row.amount_minor == amount * 100:
            held[deposit_id] = checkout
            if len(held) == 2:
                both_held.set()
            await release.wait()  # read done, transaction still open
        return early

    monkeypatch.setattr(deposits, "record_stk_push", record_then_hold)
    headers = stack.auth("racer", unique_tenant())
    first = (await initiate(stack, headers, phone=PHONE_NO_CALLBACK, amount=amount)).json()
    second = (await initiate(stack, headers, phone=PHONE_NO_CALLBACK, amount=amount)).json()
    try:
        await asyncio.wait_for(both_held.wait(), timeout=20)
        checkout = held[first["id"]]
        genuine = await sandbox_body(stack, checkout)
        callback = asyncio.create_task(stack.api.post(stack.callback_path, json=genuine))
        # the route has either finished (it missed the recorder's uncommitted row) or waits for
        # the recorder's lock: only then does the recorder commit
        await eventually(
            lambda: advisory_lock_waiters(stack),
            lambda waiting: callback.done() or waiting > 0,
            timeout=10,
            what="the callback route to finish or wait for the recorder",
        )
    finally:
        release.set()
    answer = await callback
    assert answer.status_code == 200, answer.text

    state = await final_state(stack, first["workflow_id"])
    receipt = genuine["Body"]["stkCallback"]["CallbackMetadata"]["Item"][1]["Value"]
    assert state.status == DepositStatus.CREDITED
    assert state.receipt == receipt, "the callback never reached the workflow"
    assert delivered_by_callback(state), state.confirmed_by
    row = await stack.deposit_row(first["id"])
    assert row is not None and row.mpesa_receipt == receipt
    # the callback found its deposit: no alert says it is unowned
    assert not [
        a for a in await open_alerts(stack, "mpesa_unmatched_callback") if a["value"] == checkout
    ]
    # the other deposit (no callback from the sandbox) ends by STK Push Query, as designed
    other = await final_state(stack, second["workflow_id"])
    assert other.status == DepositStatus.CREDITED


async def test_twenty_concurrent_deposits_with_instant_callbacks_all_use_their_callback(
    stack: Stack,
) -> None:
    """Daraja calling back at once (SANDBOX_DARAJA_CALLBACK_DELAY_SECONDS=0) races every
    recorder; the same phone and amount for all (as in the benchmark) makes every lost-push
    offer ambiguous. Each deposit is credited from its own callback, none after waiting out the
    callback timeout and asking STK Push Query, and no unmatched-callback alert stays open."""
    amount = unique_amount(400, 800)
    before = set(stack.daraja_state.transactions)
    delay = stack.daraja_state.callback_delay_seconds
    stack.daraja_state.callback_delay_seconds = 0.0
    try:
        headers = stack.auth("stress", unique_tenant())
        answers = await asyncio.gather(
            *(initiate(stack, headers, phone="254708374149", amount=amount) for _ in range(20))
        )
        assert all(a.status_code == 202 for a in answers), [a.text for a in answers]
        bodies = [a.json() for a in answers]
        states = await asyncio.gather(*(final_state(stack, b["workflow_id"]) for b in bodies))
    finally:
        stack.daraja_state.callback_delay_seconds = delay
    ours = [
        t
        for key, t in stack.daraja_state.transactions.items()
        if key not in before and t.amount == amount
    ]
    assert len(ours) == 20  # one prompt per deposit
    assert [s.status for s in states] == [DepositStatus.CREDITED] * 20
    by_query = [s.deposit_id for s in states if not delivered_by_callback(s)]
    assert by_query == [], f"confirmed only by STK Push Query (callback lost): {by_query}"
    checkouts = {s.checkout_request_id for s in states}
    unowned = [
        a for a in await open_alerts(stack, "mpesa_unmatched_callback") if a["value"] in checkouts
    ]
    assert unowned == []
