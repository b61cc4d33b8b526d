"""Reconciliation reports, and Settle's side of each comparison looked up by the provider's ids.

Settle's rows are found by the ids the provider gives (PaymentIntent, refund, transaction hash,
mint), not by the window: a payment made at 23:59 and recorded at 00:01 is still matched.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.mpesa import DepositStatus, RaiseAlertInput, StkCallback
from domain.reconcile import (
    ALERT_CONDITION,
    DarajaPayment,
    OpenReconciliation,
    ProviderReport,
    ReconcileItem,
    ReconcileResult,
    SettleDeposit,
    SettleIntentCredit,
    SettlePayout,
    SettleStripeRow,
    SettleTicket,
    SettleUnmatched,
)
from store import alerts
from store.models import (
    DepositIntent,
    DepositTransfer,
    EvmTransaction,
    MpesaCallbackRecord,
    MpesaDeposit,
    MpesaUnmatchedPayment,
    Reconciliation,
    ReconciliationItem,
    TicketPurchase,
    TicketRefund,
    utcnow,
)

RUNNING, COMPLETED = "running", "completed"
#: the wallet writer's key for a deposit's payout: ``mpesa-deposit:<id>:usdc:<attempt>``
PAYOUT_KEY_PREFIX = "mpesa-deposit:"
#: ids per IN list: asyncpg takes at most 32,767 parameters per statement, and a day of USDC
#: transfers on a busy chain has more recipients than that
CHUNK = 5000


def chunks(values: Iterable[str], size: int = CHUNK) -> Iterator[list[str]]:
    ordered = sorted(set(values))
    for start in range(0, len(ordered), size):
        yield ordered[start : start + size]


async def open_report(session: AsyncSession, request: OpenReconciliation) -> str:
    """The report's row: the API's (by id), or the one this workflow opened before (a retry)."""
    if request.reconciliation_id:
        row = await session.get(Reconciliation, request.reconciliation_id)
        if row is not None:
            return row.id
    query = select(Reconciliation).where(Reconciliation.workflow_id == request.workflow_id)
    row = (await session.execute(query)).scalar_one_or_none()
    if row is not None:
        return row.id
    row = Reconciliation(
        workflow_id=request.workflow_id,
        since=request.since,
        until=request.until,
        requested_by=request.requested_by,
        status=RUNNING,
    )
    if request.reconciliation_id:
        row.id = request.reconciliation_id
    session.add(row)
    await session.flush()
    return row.id


def alert_reference(item: ReconcileItem) -> str:
    """Alerts keep a 64-character reference: the item's key, hashed when longer."""
    key = item.key
    return key if len(key) <= 64 else "recon:" + hashlib.sha256(key.encode()).hexdigest()[:40]


async def record(
    session: AsyncSession, reconciliation_id: str, reports: Iterable[ProviderReport]
) -> ReconcileResult:
    """Store the items and raise one alert per mismatch; a replay finds them stored."""
    row = await session.get(Reconciliation, reconciliation_id, with_for_update=True)
    if row is None:
        raise LookupError(f"no reconciliation {reconciliation_id}")
    reports = list(reports)
    checked = {r.provider: r.checked for r in reports}
    stored = (
        await session.execute(
            select(func.count())
            .select_from(ReconciliationItem)
            .where(ReconciliationItem.reconciliation_id == row.id)
        )
    ).scalar_one()
    items = [item for report in reports for item in report.items]
    if row.status != COMPLETED and not stored:
        for item in items:
            alert_id = await alerts.raise_event(
                session,
                RaiseAlertInput(
                    condition=ALERT_CONDITION,
                    reference=alert_reference(item),
                    severity="critical",
                    message=(
                        f"reconciliation {row.id}: {item.provider} {item.kind} "
                        f"{item.provider_ref} ({item.provider_amount_minor} {item.currency or ''})"
                        f" vs Settle {item.settle_ref} ({item.settle_amount_minor}) {item.detail}"
                    )[:2000],
                ),
            )
            session.add(
                ReconciliationItem(
                    reconciliation_id=row.id,
                    alert_id=alert_id,
                    **item.model_dump(exclude={"receipt"}),
                )
            )
    row.status, row.clean, row.checked = COMPLETED, not items, checked
    row.completed_at = row.completed_at or utcnow()
    await session.flush()
    return ReconcileResult(
        reconciliation_id=row.id,
        clean=not items,
        items=len(items),
        checked=checked,
        mismatches={r.provider: len(r.items) for r in reports},
    )


# --- Settle's side -------------------------------------------------------------------------


async def kept_payments(
    session: AsyncSession, since: datetime, until: datetime
) -> list[DarajaPayment]:
    """Successful payments Daraja told Settle about in the window: the kept STK callbacks.

    The one source of Daraja's side: every success callback is kept here, the unmatched ones
    too (:func:`unmatched_for` tells how an admin settled those).
    """
    rows = await session.execute(
        select(MpesaCallbackRecord).where(
            MpesaCallbackRecord.result_code == 0,
            MpesaCallbackRecord.received_at >= since,
            MpesaCallbackRecord.received_at < until,
        )
    )
    payments = []
    for record in rows.scalars():
        callback = StkCallback.model_validate_json(record.payload)
        payments.append(
            DarajaPayment(
                checkout_request_id=record.checkout_request_id,
                receipt=callback.receipt,
                amount_minor=callback.amount_minor,
            )
        )
    return payments


async def unmatched_for(session: AsyncSession, checkout_ids: set[str]) -> list[SettleUnmatched]:
    """The unmatched payments among these CheckoutRequestIDs, with how they were settled."""
    return [
        SettleUnmatched(
            payment_id=u.id,
            checkout_request_id=u.checkout_request_id,
            status=u.status,
            deposit_id=u.deposit_id,
            resolution_reference=u.resolution_reference,
        )
        for ids in chunks(checkout_ids)
        for u in (
            await session.execute(
                select(MpesaUnmatchedPayment).where(
                    MpesaUnmatchedPayment.checkout_request_id.in_(ids)
                )
            )
        ).scalars()
    ]


async def deposits_for(session: AsyncSession, checkout_ids: set[str]) -> list[SettleDeposit]:
    rows = [
        d
        for ids in chunks(checkout_ids)
        for d in (
            await session.execute(
                select(MpesaDeposit).where(MpesaDeposit.checkout_request_id.in_(ids))
            )
        ).scalars()
    ]
    return [
        SettleDeposit(
            deposit_id=d.id,
            checkout_request_id=d.checkout_request_id,
            receipt=d.mpesa_receipt,
            amount_minor=d.amount_minor,
            status=d.status,
            credited=d.ledger_entry_id is not None and d.status == DepositStatus.CREDITED,
        )
        for d in rows
    ]


async def purchases_for(session: AsyncSession, intent_ids: set[str]) -> list[SettleStripeRow]:
    rows = [
        p
        for ids in chunks(intent_ids)
        for p in (
            await session.execute(
                select(TicketPurchase).where(TicketPurchase.payment_intent_id.in_(ids))
            )
        ).scalars()
    ]
    return [
        SettleStripeRow(
            row_id=p.id,
            stripe_id=p.payment_intent_id or "",
            amount_minor=p.amount_captured,
            status=p.status,
        )
        for p in rows
    ]


async def refunds_for(session: AsyncSession, refund_ids: set[str]) -> list[SettleStripeRow]:
    rows = [
        r
        for ids in chunks(refund_ids)
        for r in (
            await session.execute(
                select(TicketRefund).where(TicketRefund.stripe_refund_id.in_(ids))
            )
        ).scalars()
    ]
    return [
        SettleStripeRow(
            row_id=r.id,
            stripe_id=r.stripe_refund_id or "",
            amount_minor=r.amount_minor,
            status=r.status,
        )
        for r in rows
    ]


async def payouts_for(session: AsyncSession, tx_hashes: set[str]) -> list[SettlePayout]:
    """Deposits whose USDC leg is one of these transactions: by the hash kept on the deposit, or
    by the wallet writer's record of it (a fee-bumped replacement mined under another hash)."""
    by_deposit: dict[str, MpesaDeposit] = {}
    sent: list[EvmTransaction] = []
    for hashes in chunks(h.lower() for h in tx_hashes):
        deposits = await session.execute(
            select(MpesaDeposit).where(func.lower(MpesaDeposit.usdc_tx_hash).in_(hashes))
        )
        by_deposit.update((d.id, d) for d in deposits.scalars())
        writer = await session.execute(
            select(EvmTransaction).where(
                or_(
                    func.lower(EvmTransaction.mined_hash).in_(hashes),
                    func.lower(EvmTransaction.current_hash).in_(hashes),
                ),
                EvmTransaction.idempotency_key.startswith(PAYOUT_KEY_PREFIX),
            )
        )
        sent += writer.scalars()
    payouts = [
        SettlePayout(
            deposit_id=d.id,
            tx_hash=d.usdc_tx_hash or "",
            amount_minor=d.usdc_minor,
            ledger_entry_id=d.ledger_entry_id,
            log_index=d.usdc_log_index,
        )
        for d in by_deposit.values()
    ]
    for tx in sent:
        deposit_id = tx.idempotency_key.removeprefix(PAYOUT_KEY_PREFIX).split(":")[0]
        deposit = by_deposit.get(deposit_id) or await session.get(MpesaDeposit, deposit_id)
        if deposit is None:
            continue
        payouts.append(
            SettlePayout(
                deposit_id=deposit.id,
                tx_hash=tx.mined_hash or tx.current_hash,
                amount_minor=deposit.usdc_minor,
                ledger_entry_id=deposit.ledger_entry_id,
            )
        )
    return payouts


async def intent_addresses(session: AsyncSession, chain: str, addresses: set[str]) -> set[str]:
    found: set[str] = set()
    for batch in chunks(addresses):
        rows = await session.execute(
            select(DepositIntent.address).where(
                DepositIntent.chain == chain, DepositIntent.address.in_(batch)
            )
        )
        found.update(rows.scalars())
    return found


async def intent_credits(
    session: AsyncSession, chain: str, tx_hashes: set[str]
) -> list[SettleIntentCredit]:
    # the scanner keeps hashes in lower case
    rows = [
        t
        for batch in chunks(h.lower() for h in tx_hashes)
        for t in (
            await session.execute(
                select(DepositTransfer).where(
                    DepositTransfer.chain == chain, DepositTransfer.tx_hash.in_(batch)
                )
            )
        ).scalars()
    ]
    credits: dict[tuple[str, int], SettleIntentCredit] = {}
    for t in rows:
        key = (t.tx_hash.lower(), t.log_index)
        if key in credits and credits[key].ledger_entry_id is not None:
            continue  # a reorg's second sighting of a credited transfer
        credits[key] = SettleIntentCredit(
            tx_hash=t.tx_hash,
            log_index=t.log_index,
            intent_id=t.intent_id,
            status=t.status,
            amount_minor=t.amount_minor,
            ledger_entry_id=t.ledger_entry_id,
        )
    return list(credits.values())


async def tickets_for(session: AsyncSession, mints: set[str]) -> list[SettleTicket]:
    tickets: list[SettleTicket] = []
    for batch in chunks(mints):
        rows = await session.execute(
            select(TicketPurchase.id, TicketPurchase.mint_address).where(
                TicketPurchase.mint_address.in_(batch)
            )
        )
        tickets += [SettleTicket(purchase_id=pid, mint_address=m) for pid, m in rows.all()]
    return tickets
