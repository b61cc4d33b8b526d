"""STK push attempt rows: written before a push leaves, so a push whose answer was lost is
resolved (:func:`domain.push_attempts.resolve`) instead of repeated blindly."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.mpesa import StkPushInput, StkPushResult
from domain.push_attempts import (
    UNRESOLVED,
    Adopt,
    Attempt,
    AttemptState,
    KeptCallback,
    PushAgain,
    Resolution,
    next_attempt,
    resolve,
)
from store import deposits
from store.models import MpesaPushAttempt, MpesaUnmatchedPayment

#: an unmatched payment offered to a deposit at callback time (see store.unmatched_payments)
OFFERED = "offered"


def _attempt(row: MpesaPushAttempt) -> Attempt:
    return Attempt(
        attempt=row.attempt,
        state=AttemptState(row.state),
        created_at=row.created_at,
        checkout_request_id=row.checkout_request_id,
        merchant_request_id=row.merchant_request_id,
    )


async def of_deposit(session: AsyncSession, deposit_id: str) -> list[MpesaPushAttempt]:
    query = (
        select(MpesaPushAttempt)
        .where(MpesaPushAttempt.deposit_id == deposit_id)
        .order_by(MpesaPushAttempt.attempt)
    )
    return list((await session.execute(query)).scalars())


async def _offered(session: AsyncSession, deposit_id: str) -> list[KeptCallback]:
    query = select(MpesaUnmatchedPayment).where(
        MpesaUnmatchedPayment.deposit_id == deposit_id, MpesaUnmatchedPayment.status == OFFERED
    )
    return [
        KeptCallback(
            checkout_request_id=row.checkout_request_id,
            merchant_request_id=row.merchant_request_id or "",
            phone=row.phone,
            amount_minor=row.amount_minor,
            received_at=row.received_at,
        )
        for row in (await session.execute(query)).scalars()
    ]


async def begin(
    session: AsyncSession,
    request: StkPushInput,
    *,
    now: datetime,
    prompt_seconds: float,
    match_seconds: float,
) -> Resolution | int:
    """Resolve the deposit's earlier attempts; when a new push may go, write its row (state
    ``sending``) and return its number. A ``PushAgain`` returned means the request forbids a
    second prompt after an unresolved one expired (``prompt_again_after_expiry``): send
    nothing. The deposit row is locked, so two executions of the activity (a retry and a worker
    that has not died after all) cannot both decide to push."""
    await deposits.get(session, request.deposit_id, for_update=True)
    rows = await of_deposit(session, request.deposit_id)
    resolution = resolve(
        [_attempt(r) for r in rows],
        await _offered(session, request.deposit_id),
        phone=request.phone,
        amount_minor=request.amount_minor,
        now=now,
        prompt_seconds=prompt_seconds,
        match_seconds=match_seconds,
    )
    by_number = {r.attempt: r for r in rows}
    if isinstance(resolution, Adopt):
        row = by_number[resolution.attempt]
        if row.state in UNRESOLVED:
            row.state = AttemptState.ADOPTED.value
            row.checkout_request_id = resolution.checkout_request_id
            row.merchant_request_id = resolution.merchant_request_id
            row.resolved_at = now
        return resolution
    if not isinstance(resolution, PushAgain):
        return resolution
    expired_before = [r.attempt for r in rows if r.state == AttemptState.EXPIRED.value]
    for number in resolution.expired:
        by_number[number].state = AttemptState.EXPIRED.value
        by_number[number].resolved_at = now
    if not request.prompt_again_after_expiry and (resolution.expired or expired_before):
        # an earlier prompt may have been answered unseen: no second one, now or on any later
        # execution (the caller ends the deposit); a late callback for it is nobody's push
        return PushAgain(tuple(sorted({*expired_before, *resolution.expired})))
    number = next_attempt([_attempt(r) for r in rows])
    session.add(
        MpesaPushAttempt(
            deposit_id=request.deposit_id,
            attempt=number,
            phone=request.phone,
            amount_minor=request.amount_minor,
            state=AttemptState.SENDING.value,
            created_at=now,
        )
    )
    await session.flush()
    return number


async def finish(
    session: AsyncSession,
    deposit_id: str,
    attempt: int,
    state: AttemptState,
    result: StkPushResult | None = None,
) -> None:
    """Record what Daraja said about one attempt (its CheckoutRequestID, before the activity
    completes). A callback may already have adopted the same CheckoutRequestID for it."""
    row = await session.get(MpesaPushAttempt, (deposit_id, attempt), with_for_update=True)
    if row is None:
        return
    row.state = state.value
    row.resolved_at = row.resolved_at or datetime.now(row.created_at.tzinfo)
    if result is not None:
        row.checkout_request_id = result.checkout_request_id
        row.merchant_request_id = result.merchant_request_id


async def deposit_of_checkout(session: AsyncSession, checkout_request_id: str) -> str | None:
    """The deposit whose push got this CheckoutRequestID, recorded on its attempt row before its
    workflow recorded it on the deposit."""
    query = select(MpesaPushAttempt.deposit_id).where(
        MpesaPushAttempt.checkout_request_id == checkout_request_id
    )
    return (await session.execute(query)).scalars().first()


async def matching(
    session: AsyncSession,
    phone: str,
    amount_minor: int,
    received_at: datetime,
    match_seconds: float,
) -> list[MpesaPushAttempt]:
    """Attempts with no CheckoutRequestID that a success callback of this phone and amount may
    answer: written at most ``match_seconds`` before it arrived (see
    :func:`domain.push_attempts.callback_matches`). Unresolved ones, and expired ones (a late
    callback: its deposit has prompted again, so an admin decides)."""
    states = [s.value for s in UNRESOLVED] + [AttemptState.EXPIRED.value]
    query = select(MpesaPushAttempt).where(
        MpesaPushAttempt.state.in_(states),
        MpesaPushAttempt.checkout_request_id.is_(None),
        MpesaPushAttempt.phone == phone,
        MpesaPushAttempt.amount_minor == amount_minor,
        MpesaPushAttempt.created_at >= received_at - timedelta(seconds=match_seconds),
        MpesaPushAttempt.created_at <= received_at,
    )
    return list((await session.execute(query)).scalars())
