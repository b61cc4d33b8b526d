"""Unmatched M-Pesa payments: a success callback whose CheckoutRequestID no deposit recorded is
never just kept. It is offered to the one deposit whose push it may answer (and adopted when that
deposit's workflow records it), or open with an alert until an admin credits it to a deposit or
marks it refunded. Offered payments their deposit does not adopt (it prompted again, or ended)
become open too."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import Conflict, NotFound
from domain.money import Currency, format_minor
from domain.mpesa import CreditDepositInput, DepositStatus, RaiseAlertInput, StkCallback
from runtime.logging import get_logger
from store import alerts, deposits
from store.models import LedgerEntry, MpesaDeposit, MpesaUnmatchedPayment

log = get_logger("store.unmatched_payments")

#: the alert raised for a success callback no deposit owns (one per CheckoutRequestID)
ALERT = "mpesa_unmatched_callback"
OFFERED, OPEN, ADOPTED, CREDITED, REFUNDED = "offered", "open", "adopted", "credited", "refunded"
#: a deposit in these statuses is over without this payment: an admin may credit it
CREDITABLE = frozenset({DepositStatus.FAILED.value, DepositStatus.ABANDONED.value})


def _now() -> datetime:
    return datetime.now(UTC)


async def by_checkout(
    session: AsyncSession, checkout_request_id: str
) -> MpesaUnmatchedPayment | None:
    query = select(MpesaUnmatchedPayment).where(
        MpesaUnmatchedPayment.checkout_request_id == checkout_request_id
    )
    return (await session.execute(query.with_for_update())).scalar_one_or_none()


async def _raise(session: AsyncSession, payment: MpesaUnmatchedPayment) -> None:
    amount = (
        format_minor(payment.amount_minor, Currency.KES)
        if payment.amount_minor is not None
        else "?"
    )
    await alerts.raise_event(
        session,
        RaiseAlertInput(
            condition=ALERT,
            reference=payment.checkout_request_id,
            tenant=payment.tenant,
            message=(
                f"M-Pesa payment {payment.receipt} ({amount} KES from {payment.phone}, "
                f"CheckoutRequestID {payment.checkout_request_id}): nothing was credited, "
                f"{payment.reason}. Resolve unmatched payment {payment.id}: credit it to a "
                "deposit or mark it refunded"
            ),
        ),
    )


async def keep(
    session: AsyncSession,
    callback: StkCallback,
    *,
    deposit: MpesaDeposit | None,
    offered: bool,
    reason: str,
) -> MpesaUnmatchedPayment:
    """Keep a success callback nobody recorded: offered to ``deposit``, or open with an alert
    (``deposit`` then only suggests the owner, and names the tenant whose admin sees it). A
    redelivered callback finds the first one."""
    existing = await by_checkout(session, callback.checkout_request_id)
    if existing is not None:
        return existing
    payment = MpesaUnmatchedPayment(
        checkout_request_id=callback.checkout_request_id,
        merchant_request_id=callback.merchant_request_id,
        receipt=callback.receipt,
        phone=callback.phone,
        amount_minor=callback.amount_minor,
        tenant=deposit.tenant if deposit is not None else None,
        deposit_id=deposit.id if deposit is not None else None,
        status=OFFERED if offered else OPEN,
        reason=reason,
        received_at=_now(),
    )
    session.add(payment)
    await session.flush()
    if not offered:
        await _raise(session, payment)
    log.warning(
        "unmatched M-Pesa payment kept",
        payment_id=payment.id,
        status=payment.status,
        deposit_id=payment.deposit_id,
        checkout_request_id=payment.checkout_request_id,
    )
    return payment


async def adopt(session: AsyncSession, checkout_request_id: str, deposit_id: str) -> None:
    """The deposit's workflow recorded this CheckoutRequestID: its payment is matched."""
    payment = await by_checkout(session, checkout_request_id)
    if payment is None or payment.status not in (OFFERED, OPEN):
        return
    payment.status, payment.deposit_id = ADOPTED, deposit_id
    payment.resolved_at, payment.resolved_by = _now(), f"workflow of deposit {deposit_id}"
    await alerts.clear_event(session, ALERT, checkout_request_id)


async def reopen_offered(
    session: AsyncSession, deposit_id: str, why: str, *, keep_checkout: str | None = None
) -> None:
    """Payments offered to a deposit that will not adopt them become open, with an alert."""
    query = select(MpesaUnmatchedPayment).where(
        MpesaUnmatchedPayment.deposit_id == deposit_id, MpesaUnmatchedPayment.status == OFFERED
    )
    for payment in (await session.execute(query.with_for_update())).scalars():
        if payment.checkout_request_id == keep_checkout:
            continue
        payment.status, payment.reason = OPEN, why
        await _raise(session, payment)
        log.error(
            "offered M-Pesa payment not adopted: open for an admin",
            payment_id=payment.id,
            deposit_id=deposit_id,
        )


async def listing(
    session: AsyncSession, tenant: str | None, statuses: Sequence[str], limit: int
) -> list[MpesaUnmatchedPayment]:
    """Newest first; ``tenant`` None: every tenant's and the unknown ones (platform_admin)."""
    query = select(MpesaUnmatchedPayment).where(MpesaUnmatchedPayment.status.in_(list(statuses)))
    if tenant is not None:
        query = query.where(MpesaUnmatchedPayment.tenant == tenant)
    query = query.order_by(MpesaUnmatchedPayment.received_at.desc()).limit(limit)
    return list((await session.execute(query)).scalars())


async def _open_payment(
    session: AsyncSession, payment_id: str, tenant: str | None
) -> MpesaUnmatchedPayment:
    payment = await session.get(MpesaUnmatchedPayment, payment_id, with_for_update=True)
    if payment is None or (tenant is not None and payment.tenant != tenant):
        raise NotFound("unmatched payment not found", field="payment_id")
    if payment.status != OPEN:
        raise Conflict(
            f"unmatched payment is {payment.status}, not open: nothing changed", field="payment_id"
        )
    return payment


def _resolved(payment: MpesaUnmatchedPayment, status: str, who: str, reference: str) -> None:
    payment.status, payment.resolved_by, payment.resolved_at = status, who, _now()
    payment.resolution_reference = reference


async def credit_to_deposit(
    session: AsyncSession, payment_id: str, deposit_id: str, *, tenant: str | None, who: str
) -> MpesaUnmatchedPayment:
    """Credit an open payment to a deposit that ended without it (failed or abandoned, never
    credited), through the deposit's own ledger path (KES into the user's portfolio from the
    M-Pesa float, keyed by the receipt): once. Refused (409, nothing changed) when the deposit
    is open (its workflow may still credit it), already credited, or for another amount or
    phone. ``tenant`` None: a platform_admin, any tenant's deposit."""
    payment = await _open_payment(session, payment_id, tenant)
    deposit = await deposits.find(session, deposit_id)
    owner = tenant or payment.tenant
    if deposit is None or (owner is not None and deposit.tenant != owner):
        raise NotFound("deposit not found", field="deposit_id")
    deposit = await deposits.get(session, deposit_id, for_update=True)
    if deposit.ledger_entry_id is not None:
        raise Conflict(
            f"deposit is already credited (receipt {deposit.mpesa_receipt}): mark this payment "
            "refunded instead",
            field="deposit_id",
        )
    if deposit.status not in CREDITABLE:
        raise Conflict(
            f"deposit is {deposit.status}: its workflow may still credit it", field="deposit_id"
        )
    if (deposit.amount_minor, deposit.phone) != (payment.amount_minor, payment.phone):
        raise Conflict("the payment's amount or phone is not the deposit's", field="deposit_id")
    key = deposits.ledger_key(payment.checkout_request_id, payment.receipt)
    taken = await session.execute(select(LedgerEntry.id).where(LedgerEntry.idempotency_key == key))
    if taken.scalar_one_or_none() is not None:
        raise Conflict("this payment is already in the ledger", field="payment_id")
    result = await deposits.credit(
        session,
        CreditDepositInput(
            deposit_id=deposit.id,
            checkout_request_id=payment.checkout_request_id,
            receipt=payment.receipt,
            result_desc=f"unmatched payment {payment.id} credited by {who}",
        ),
    )
    _resolved(payment, CREDITED, who, deposit.id)
    payment.deposit_id, payment.tenant, payment.ledger_entry_id = (
        deposit.id,
        deposit.tenant,
        result.entry_id,
    )
    await alerts.clear_event(session, ALERT, payment.checkout_request_id)
    log.info("unmatched payment credited", payment_id=payment.id, deposit_id=deposit.id, by=who)
    return payment


async def mark_refunded(
    session: AsyncSession, payment_id: str, reference: str, *, tenant: str | None, who: str
) -> MpesaUnmatchedPayment:
    """The customer got the money back outside Settle (an M-Pesa reversal): record its
    reference; nothing moves in the ledger."""
    payment = await _open_payment(session, payment_id, tenant)
    _resolved(payment, REFUNDED, who, reference)
    await alerts.clear_event(session, ALERT, payment.checkout_request_id)
    log.info("unmatched payment marked refunded", payment_id=payment.id, by=who, ref=reference)
    return payment
