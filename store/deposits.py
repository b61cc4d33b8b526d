"""M-Pesa deposit rows, their callbacks, and the credit that moves money exactly once."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import NotFound
from domain.money import Currency
from domain.mpesa import (
    FINAL_STATUSES,
    CreditDepositInput,
    CreditDepositResult,
    DepositOutcomeInput,
    DepositStatus,
    RecordConversionInput,
    StkCallback,
)
from domain.push_attempts import UNRESOLVED as UNRESOLVED_STATES
from domain.push_attempts import AttemptState
from store import accounts, alerts, push_attempts, unmatched_payments
from store.ledger import PostingSpec, post_entry
from store.models import (
    MpesaCallbackRecord,
    MpesaDeposit,
    MpesaPushAttempt,
    MpesaUnmatchedPayment,
)

LEDGER_KIND = "mpesa_deposit"
#: the alert raised for a success callback no deposit can own
UNMATCHED_CALLBACK_ALERT = "mpesa_unmatched_callback"


def ledger_key(checkout_request_id: str, receipt: str | None) -> str:
    """Postings are keyed by the M-Pesa receipt; a deposit confirmed only by STK Push Query has
    no receipt, so its CheckoutRequestID (one per payment prompt) stands in."""
    return f"mpesa:receipt:{receipt}" if receipt else f"mpesa:checkout:{checkout_request_id}"


async def get(session: AsyncSession, deposit_id: str, *, for_update: bool = False) -> MpesaDeposit:
    query = select(MpesaDeposit).where(MpesaDeposit.id == deposit_id)
    if for_update:
        query = query.with_for_update()
    deposit = (await session.execute(query)).scalar_one_or_none()
    if deposit is None:
        raise NotFound(f"deposit {deposit_id} not found")
    return deposit


async def find(session: AsyncSession, deposit_id: str) -> MpesaDeposit | None:
    return await session.get(MpesaDeposit, deposit_id)


async def by_checkout_request_id(
    session: AsyncSession, checkout_request_id: str
) -> MpesaDeposit | None:
    query = select(MpesaDeposit).where(MpesaDeposit.checkout_request_id == checkout_request_id)
    return (await session.execute(query)).scalar_one_or_none()


async def lost_push_candidates(
    session: AsyncSession, phone: str, amount_minor: int, since: datetime
) -> list[MpesaDeposit]:
    """Open deposits that may own a success callback nobody recognised: no CheckoutRequestID
    recorded yet (a push whose answer was lost, or one still being recorded), same phone and
    amount, started since ``since``. At most two: more than one is ambiguous either way."""
    query = (
        select(MpesaDeposit)
        .where(
            MpesaDeposit.checkout_request_id.is_(None),
            MpesaDeposit.phone == phone,
            MpesaDeposit.amount_minor == amount_minor,
            MpesaDeposit.status.in_(
                [DepositStatus.INITIATED.value, DepositStatus.AWAITING_PAYMENT.value]
            ),
            MpesaDeposit.created_at >= since,
        )
        .limit(2)
    )
    return list((await session.execute(query)).scalars())


def checkout_lock_key(checkout_request_id: str) -> int:
    """The PostgreSQL advisory lock key of one CheckoutRequestID (a signed 64-bit integer). A
    hash collision only makes two unrelated callbacks wait for each other."""
    digest = hashlib.blake2b(
        f"mpesa-checkout:{checkout_request_id}".encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big", signed=True)


async def lock_checkout(session: AsyncSession, checkout_request_id: str) -> None:
    """Take the transaction's lock on one CheckoutRequestID (released at commit or rollback)."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(:key)"), {"key": checkout_lock_key(checkout_request_id)}
    )


async def record_stk_push(
    session: AsyncSession, deposit_id: str, merchant_request_id: str, checkout_request_id: str
) -> StkCallback | None:
    """Store the CheckoutRequestID; return a callback that already arrived for it, if any.

    Handoff invariant (with :func:`accept_callback`): both take the advisory lock of the
    CheckoutRequestID before they read or write anything, so the two transactions are serialized
    and, under READ COMMITTED (each statement sees what was committed before it started), the
    second one to get the lock sees what the first one committed:

    - the recorder goes first: the callback route then finds the deposit by its
      CheckoutRequestID and signals its workflow;
    - the callback route goes first: its callback row is committed, so the recorder finds it here
      and hands it back to the workflow (and clears the unmatched-callback alert the route may
      have raised for it, since the callback now has its deposit).

    Never neither, whatever the interleaving. An unmatched payment kept for this
    CheckoutRequestID is adopted; others offered to this deposit will not be, and become open
    for an admin (:mod:`store.unmatched_payments`). Both at once cannot happen on these two paths; a
    callback also offered to a lost-push candidate or redelivered by Daraja reaches the
    workflow twice, and its ``mpesa_callback`` signal keeps the first per CheckoutRequestID.
    """
    await lock_checkout(session, checkout_request_id)
    deposit = await get(session, deposit_id, for_update=True)
    deposit.merchant_request_id = merchant_request_id
    deposit.checkout_request_id = checkout_request_id
    if deposit.status == DepositStatus.INITIATED:
        deposit.status = DepositStatus.AWAITING_PAYMENT
    early = (
        await session.execute(
            select(MpesaCallbackRecord).where(
                MpesaCallbackRecord.checkout_request_id == checkout_request_id
            )
        )
    ).scalar_one_or_none()
    await unmatched_payments.adopt(session, checkout_request_id, deposit_id)
    await unmatched_payments.reopen_offered(
        session,
        deposit_id,
        f"deposit {deposit_id} recorded another STK push ({checkout_request_id})",
        keep_checkout=checkout_request_id,
    )
    if early is None:
        return None
    await alerts.clear_event(session, UNMATCHED_CALLBACK_ALERT, checkout_request_id)
    return StkCallback.model_validate_json(early.payload)


async def store_callback(
    session: AsyncSession, callback: StkCallback, source_ip: str | None
) -> bool:
    """Keep the first callback per CheckoutRequestID; later duplicates are ignored (False)."""
    try:
        async with session.begin_nested():
            session.add(
                MpesaCallbackRecord(
                    checkout_request_id=callback.checkout_request_id,
                    result_code=callback.result_code,
                    payload=callback.model_dump_json(),
                    source_ip=source_ip,
                )
            )
            await session.flush()
        return True
    except IntegrityError:
        return False


@dataclass
class CallbackRouting:
    """Where a Daraja callback goes: its deposit, else the deposit a success was offered to."""

    first: bool
    deposit: MpesaDeposit | None = None
    #: a success nobody recorded: offered to ``deposit`` (else open for an admin)
    unmatched: MpesaUnmatchedPayment | None = None


async def accept_callback(
    session: AsyncSession,
    callback: StkCallback,
    source_ip: str | None,
    *,
    since: datetime,
    match_seconds: float,
) -> CallbackRouting:
    """Keep the callback and find who it is for, under the CheckoutRequestID's lock (see
    :func:`record_stk_push` for the invariant): the deposit that recorded it, or whose push
    attempt got it from Daraja (its workflow has not recorded it yet). A success nobody recorded
    is an unmatched payment (:func:`_unmatched_success`)."""
    await lock_checkout(session, callback.checkout_request_id)
    first = await store_callback(session, callback, source_ip)
    deposit = await by_checkout_request_id(session, callback.checkout_request_id)
    if deposit is None:
        owner = await push_attempts.deposit_of_checkout(session, callback.checkout_request_id)
        deposit = await find(session, owner) if owner else None
    if deposit is not None:
        return CallbackRouting(first=first, deposit=deposit)
    if callback.result_code != 0 or not callback.phone or not callback.amount_minor:
        return CallbackRouting(first=first)
    return await _unmatched_success(session, callback, first, since, match_seconds)


async def _unmatched_success(
    session: AsyncSession, callback: StkCallback, first: bool, since: datetime, match_seconds: float
) -> CallbackRouting:
    """Match a success nobody recorded to the push it may answer: push attempts with no
    CheckoutRequestID, of the same phone and amount, written within ``match_seconds`` before
    it (else, for deposits without attempt rows, open deposits of that phone and amount started
    since ``since``). One open deposit: the payment is offered to it (the attempt takes its
    CheckoutRequestID, so a retried push adopts it). Otherwise it is open, with an alert, naming
    the deposit that may own it when there is just one (an admin of its tenant resolves it)."""
    assert callback.phone and callback.amount_minor
    now = datetime.now(UTC)
    attempts = await push_attempts.matching(
        session, callback.phone, callback.amount_minor, now, match_seconds
    )
    owners = {a.deposit_id for a in attempts}
    if attempts:
        found = [d for d in [await find(session, i) for i in sorted(owners)] if d is not None]
    else:
        found = await lost_push_candidates(session, callback.phone, callback.amount_minor, since)
    open_ones = [
        d
        for d in found
        if d.checkout_request_id is None
        and d.status in (DepositStatus.INITIATED, DepositStatus.AWAITING_PAYMENT)
    ]
    if len(open_ones) == 1 and await _may_offer(session, open_ones[0], attempts):
        deposit = open_ones[0]
        for attempt in attempts:
            if attempt.deposit_id == deposit.id and attempt.state in UNRESOLVED_STATES:
                attempt.state = AttemptState.ADOPTED.value
                attempt.checkout_request_id = callback.checkout_request_id
                attempt.merchant_request_id = callback.merchant_request_id
                attempt.resolved_at = now
        payment = await unmatched_payments.keep(
            session,
            callback,
            deposit=deposit,
            offered=True,
            reason=f"offered to deposit {deposit.id}, whose push it answers",
        )
        return CallbackRouting(first=first, deposit=deposit, unmatched=payment)
    if not found:
        reason = "no open deposit of this phone and amount pushed recently"
    elif len(found) > 1:
        reason = f"{len(found)} deposits of this phone and amount may own it"
    else:
        reason = (
            f"deposit {found[0].id} may own it, but gave its push up before it came (it is "
            f"{found[0].status}, CheckoutRequestID {found[0].checkout_request_id})"
        )
    payment = await unmatched_payments.keep(
        session,
        callback,
        deposit=found[0] if len(found) == 1 else None,
        offered=False,
        reason=reason,
    )
    return CallbackRouting(first=first, unmatched=payment)


async def _may_offer(
    session: AsyncSession, deposit: MpesaDeposit, attempts: list[MpesaPushAttempt]
) -> bool:
    """The deposit still waits for this push's answer: it is open with no CheckoutRequestID, and
    (when attempts matched) exactly one unresolved attempt matched, its own. Read again under
    the deposit's row lock, which a push activity deciding to push again holds too
    (:func:`store.push_attempts.begin`): the callback takes the attempt, or sees it expired."""
    await session.refresh(deposit, with_for_update=True)
    if deposit.checkout_request_id is not None or deposit.status not in (
        DepositStatus.INITIATED,
        DepositStatus.AWAITING_PAYMENT,
    ):
        return False
    if not attempts:
        return True  # a deposit started before push attempts were recorded
    for attempt in attempts:
        await session.refresh(attempt)
    unresolved = [
        a for a in attempts if a.state in UNRESOLVED_STATES and a.checkout_request_id is None
    ]
    return [a.deposit_id for a in unresolved] == [deposit.id]


async def set_outcome(session: AsyncSession, outcome: DepositOutcomeInput) -> MpesaDeposit:
    """Record a status change. A final status is never overwritten, and credited never undone."""
    deposit = await get(session, outcome.deposit_id, for_update=True)
    if deposit.status in FINAL_STATUSES:
        return deposit
    if outcome.status in (DepositStatus.FAILED, DepositStatus.ABANDONED):
        await unmatched_payments.reopen_offered(
            session, deposit.id, f"deposit {deposit.id} ended {outcome.status.value} without it"
        )
    deposit.status = outcome.status.value
    if outcome.result_code is not None:
        deposit.result_code = outcome.result_code
    if outcome.result_desc is not None:
        deposit.result_desc = outcome.result_desc
    if outcome.receipt is not None and deposit.mpesa_receipt is None:
        deposit.mpesa_receipt = outcome.receipt
    if outcome.failure_reason is not None:
        deposit.failure_reason = outcome.failure_reason
    return deposit


async def record_conversion(session: AsyncSession, request: RecordConversionInput) -> None:
    """Keep the on-chain leg's rate, amount and transaction on the deposit row."""
    deposit = await get(session, request.deposit_id, for_update=True)
    deposit.wallet_address = request.wallet_address
    deposit.usdc_minor = request.usdc_minor
    deposit.fx_kes_per_usdc = request.fx_kes_per_usdc
    if request.usdc_tx_hash:
        deposit.usdc_tx_hash = request.usdc_tx_hash
        deposit.usdc_log_index = request.usdc_log_index
    if deposit.status not in FINAL_STATUSES:
        deposit.status = DepositStatus.SENDING_USDC.value


def _kes_postings(deposit: MpesaDeposit, portfolio_id: str, float_id: str) -> list[PostingSpec]:
    """Before the on-chain leg: the user's KES portfolio, from the M-Pesa float."""
    return [
        PostingSpec(portfolio_id, deposit.amount_minor, Currency.KES),
        PostingSpec(float_id, -deposit.amount_minor, Currency.KES),
    ]


async def _usdc_postings(
    session: AsyncSession, deposit: MpesaDeposit, usdc_minor: int, portfolio_id: str, float_id: str
) -> list[PostingSpec]:
    """With the on-chain leg: the KES goes from the M-Pesa float to the FX pool, and the USDC
    sent on chain from the treasury to the user's portfolio. Each currency balances."""
    fx_pool = await accounts.get_or_create_account(
        session,
        owner_type=accounts.SYSTEM,
        owner_id="fx",
        kind=accounts.FX_POOL,
        currency=Currency.KES,
    )
    treasury = await accounts.get_or_create_account(
        session,
        owner_type=accounts.SYSTEM,
        owner_id="treasury",
        kind=accounts.TREASURY,
        currency=Currency.USDC,
    )
    return [
        PostingSpec(float_id, -deposit.amount_minor, Currency.KES),
        PostingSpec(fx_pool.id, deposit.amount_minor, Currency.KES),
        PostingSpec(treasury.id, -usdc_minor, Currency.USDC),
        PostingSpec(portfolio_id, usdc_minor, Currency.USDC),
    ]


async def credit(session: AsyncSession, request: CreditDepositInput) -> CreditDepositResult:
    """Credit the user's portfolio once per payment: in USDC when the on-chain leg sent it, in
    KES for deposits started before that leg existed.

    The deposit row is locked, the ledger key is unique, and a credited deposit answers with its
    first entry: a retry after a crash, a second worker, or a replay all end in one credit.
    """
    deposit = await get(session, request.deposit_id, for_update=True)
    key = ledger_key(request.checkout_request_id, request.receipt)
    currency = Currency.USDC if request.usdc_minor is not None else Currency.KES
    portfolio = await accounts.get_or_create_account(
        session,
        owner_type=accounts.USER,
        owner_id=deposit.user_id,
        kind=accounts.PORTFOLIO,
        currency=currency,
        tenant=deposit.tenant,
    )
    if deposit.ledger_entry_id is not None:
        await session.refresh(portfolio)
        return CreditDepositResult(
            entry_id=deposit.ledger_entry_id,
            idempotency_key=key,
            already_credited=True,
            balance_minor=portfolio.balance_minor,
        )
    float_account = await accounts.get_or_create_account(
        session,
        owner_type=accounts.SYSTEM,
        owner_id="mpesa",
        kind=accounts.MPESA_FLOAT,
        currency=Currency.KES,
    )
    if request.usdc_minor is None:
        postings = _kes_postings(deposit, portfolio.id, float_account.id)
    else:
        postings = await _usdc_postings(
            session, deposit, request.usdc_minor, portfolio.id, float_account.id
        )
    result = await post_entry(
        session,
        idempotency_key=key,
        kind=LEDGER_KIND,
        reference=request.receipt or request.checkout_request_id,
        description=json.dumps(
            {
                "deposit_id": deposit.id,
                "result_desc": request.result_desc,
                "usdc_tx_hash": request.usdc_tx_hash,
                "fx_kes_per_usdc": request.fx_kes_per_usdc,
            }
        ),
        postings=postings,
    )
    deposit.ledger_entry_id = result.entry.id
    deposit.status = DepositStatus.CREDITED.value
    # a credited deposit has no failure; what went wrong on the way is in the job's timeline
    deposit.failure_reason = None
    if request.receipt and deposit.mpesa_receipt is None:
        deposit.mpesa_receipt = request.receipt
    await session.flush()
    await session.refresh(portfolio)
    return CreditDepositResult(
        entry_id=result.entry.id,
        idempotency_key=key,
        already_credited=not result.created,
        balance_minor=portfolio.balance_minor,
    )
