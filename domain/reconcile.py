"""Reconciliation: Settle's rows and ledger against each provider's own record of a window.

The comparisons are pure functions over two lists (what the provider says, what Settle holds), so
they are unit-tested without any provider; the activities fetch both sides and call them, and only
the mismatches travel through Temporal (a day of records would not fit a payload).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from domain.mpesa import TransactionStatusResult
from domain.queues import Routed

#: the alert condition each mismatch raises (one open alert per provider reference)
ALERT_CONDITION = "reconciliation_mismatch"
#: what Settle holds when it holds nothing for the provider's record
NONE = "none"


class ReconcileWindow(BaseModel):
    since: datetime
    until: datetime


def previous_day(now: datetime) -> ReconcileWindow:
    """The schedule's window: the whole UTC day before ``now`` (a run at 00:30 reconciles
    yesterday, when its late callbacks and confirmations have had time to arrive)."""
    until = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return ReconcileWindow(since=until - timedelta(days=1), until=until)


class ReconcileInput(Routed):
    #: the ``reconciliations`` row; None for a scheduled run (the workflow opens one)
    reconciliation_id: str | None = None
    #: None: the previous UTC day (:func:`previous_day`), for the schedule
    since: datetime | None = None
    until: datetime | None = None
    requested_by: str = "schedule"
    #: the chain the treasury and the intents live on (``deposit_intents.chain``)
    chain: str = "base"
    #: transfers below this are dust (as the scanner ignores them), never a mismatch
    min_intent_amount_minor: int = 1
    #: Daraja items whose receipt is checked with Transaction Status (the rest say so)
    max_status_queries: int = 50
    #: how long the results of those queries (POSTed to the ResultURL) are waited for
    status_wait_seconds: float = 120.0
    #: told when a report is not clean: an ``admin_alert`` email each, and a signed
    #: ``settle.reconciliation`` webhook to this tenant's endpoints (None: no webhook)
    admin_emails: list[str] = Field(default_factory=list)
    alert_webhook_tenant: str | None = None


class ProviderCheck(BaseModel):
    """One provider's part: the window, the Settle row to open the report under."""

    reconciliation_id: str
    since: datetime
    until: datetime
    chain: str = "base"
    min_intent_amount_minor: int = 1


class ReconcileItem(BaseModel):
    """One mismatch with its evidence: the provider's record and Settle's (or ``none``)."""

    provider: str
    kind: str
    provider_ref: str
    provider_amount_minor: int | None = None
    currency: str | None = None
    settle_ref: str = NONE
    settle_amount_minor: int | None = None
    detail: str = ""
    #: Daraja items: the M-Pesa receipt to ask Transaction Status about (not stored: it is the
    #: ``provider_ref`` when the callback carried one)
    receipt: str | None = None

    @property
    def key(self) -> str:
        """Names the mismatch across runs: one open alert, however often it is reported."""
        return f"{self.provider}:{self.kind}:{self.provider_ref}"


class ProviderReport(BaseModel):
    provider: str
    #: provider records compared (a clean report of 0 records says the window was empty)
    checked: int = 0
    items: list[ReconcileItem] = Field(default_factory=list)


#: items one provider reports per run: a payload stays far below Temporal's 2 MB, and a window
#: with more mismatches than this has one cause to find first
MAX_ITEMS_PER_PROVIDER = 500


def provider_report(
    provider: str, checked: int, items: list[ReconcileItem], limit: int = MAX_ITEMS_PER_PROVIDER
) -> ProviderReport:
    """The report, its items capped at ``limit``: the last one then says how many were left out
    (narrow the window to see them)."""
    if len(items) > limit:
        left_out = len(items) - limit + 1
        items = [
            *items[: limit - 1],
            ReconcileItem(
                provider=provider,
                kind="items_truncated",
                provider_ref=provider,
                detail=f"{left_out} more mismatches not listed: reconcile a shorter window",
            ),
        ]
    return ProviderReport(provider=provider, checked=checked, items=items)


class OpenReconciliation(BaseModel):
    reconciliation_id: str | None
    workflow_id: str
    since: datetime
    until: datetime
    requested_by: str


class RecordReport(BaseModel):
    reconciliation_id: str
    reports: list[ProviderReport]


class ReconcileResult(BaseModel):
    reconciliation_id: str
    clean: bool
    items: int
    checked: dict[str, int] = Field(default_factory=dict)
    #: provider -> items reported
    mismatches: dict[str, int] = Field(default_factory=dict)

    def summary(self) -> str:
        found = ", ".join(f"{p} {n}" for p, n in sorted(self.mismatches.items()) if n)
        return f"{self.items} mismatch(es) ({found})" if self.items else "clean"


# --- Daraja --------------------------------------------------------------------------------


class DarajaPayment(BaseModel):
    """A successful STK payment as Daraja told Settle (a kept callback)."""

    checkout_request_id: str
    receipt: str | None
    amount_minor: int | None


#: the items whose receipt Transaction Status is asked about
DARAJA_RECEIPT_KINDS = (
    "payment_unknown",
    "payment_unmatched",
    "payment_not_credited",
    "amount_mismatch",
)


class SettleUnmatched(BaseModel):
    """A success callback no deposit recorded, kept as an unmatched payment (its own table)."""

    payment_id: str
    checkout_request_id: str
    #: offered, open, adopted, credited, refunded (``store.unmatched_payments``)
    status: str
    deposit_id: str | None = None
    resolution_reference: str | None = None


class SettleDeposit(BaseModel):
    deposit_id: str
    checkout_request_id: str | None
    receipt: str | None
    amount_minor: int
    status: str
    credited: bool


#: an unmatched payment an admin settled: credited to a deposit (in the ledger) or refunded
UNMATCHED_SETTLED = ("credited", "refunded")


def compare_daraja(
    payments: Iterable[DarajaPayment],
    deposits: Iterable[SettleDeposit],
    unmatched: Iterable[SettleUnmatched] = (),
) -> list[ReconcileItem]:
    """Every payment Daraja reported must be a credited deposit of the same amount, or an
    unmatched payment an admin settled (credited to a deposit through the ledger, or refunded
    with a reference). One still waiting for an admin is an item of its own."""
    by_checkout = {d.checkout_request_id: d for d in deposits if d.checkout_request_id}
    kept = {u.checkout_request_id: u for u in unmatched}
    items: list[ReconcileItem] = []
    for payment in payments:
        ref = payment.receipt or payment.checkout_request_id
        deposit = by_checkout.get(payment.checkout_request_id)
        payment_kept = kept.get(payment.checkout_request_id)
        if deposit is None and payment_kept is not None:
            if payment_kept.status in UNMATCHED_SETTLED:
                continue
            items.append(
                ReconcileItem(
                    provider="daraja",
                    kind="payment_unmatched",
                    provider_ref=ref,
                    provider_amount_minor=payment.amount_minor,
                    currency="KES",
                    settle_ref=payment_kept.payment_id,
                    detail=f"CheckoutRequestID {payment.checkout_request_id}: paid at Daraja, "
                    f"an unmatched payment ({payment_kept.status}) no admin has credited or "
                    "refunded yet (GET /api/v1/deposit/unmatched-payments)",
                    receipt=payment.receipt,
                )
            )
        elif deposit is None:
            items.append(
                ReconcileItem(
                    provider="daraja",
                    kind="payment_unknown",
                    provider_ref=ref,
                    provider_amount_minor=payment.amount_minor,
                    currency="KES",
                    detail=f"CheckoutRequestID {payment.checkout_request_id}: paid at Daraja, "
                    "no deposit of Settle's",
                    receipt=payment.receipt,
                )
            )
        elif not deposit.credited:
            items.append(
                ReconcileItem(
                    provider="daraja",
                    kind="payment_not_credited",
                    provider_ref=ref,
                    provider_amount_minor=payment.amount_minor,
                    currency="KES",
                    settle_ref=deposit.deposit_id,
                    settle_amount_minor=deposit.amount_minor,
                    detail=f"paid at Daraja, deposit is {deposit.status}",
                    receipt=payment.receipt,
                )
            )
        elif payment.amount_minor is not None and payment.amount_minor != deposit.amount_minor:
            items.append(
                ReconcileItem(
                    provider="daraja",
                    kind="amount_mismatch",
                    provider_ref=ref,
                    provider_amount_minor=payment.amount_minor,
                    currency="KES",
                    settle_ref=deposit.deposit_id,
                    settle_amount_minor=deposit.amount_minor,
                    receipt=payment.receipt,
                )
            )
    return items


class StatusQuery(BaseModel):
    reconciliation_id: str
    receipt: str
    #: our OriginatorConversationID, unique per query
    originator_id: str


def confirm_with_daraja(
    item: ReconcileItem, result: TransactionStatusResult | None, waited_seconds: float
) -> ReconcileItem:
    """A Daraja item with Daraja's own answer about its receipt (Transaction Status): a payment
    Daraja confirms keeps its kind, with Daraja's amount; one Daraja does not know is a claim
    nobody paid (``callback_not_confirmed``: a forged or reversed callback)."""
    if result is None or result.timed_out:
        why = "timed out" if result else f"did not answer within {waited_seconds:g} s"
        return item.model_copy(update={"detail": f"{item.detail}; Transaction Status {why}"})
    if result.result_code != 0:
        return item.model_copy(
            update={
                "kind": "callback_not_confirmed",
                "detail": f"{item.detail}; Transaction Status: {result.result_desc}",
            }
        )
    amount = result.amount_minor if result.amount_minor is not None else item.provider_amount_minor
    return item.model_copy(
        update={
            "provider_amount_minor": amount,
            "detail": f"{item.detail}; Daraja confirms {result.receipt or item.provider_ref}: "
            f"{result.transaction_status or 'completed'}",
        }
    )


# --- Stripe --------------------------------------------------------------------------------


class StripeObject(BaseModel):
    """A PaymentIntent (amount received) or a refund, as Stripe lists it."""

    id: str
    status: str
    amount_minor: int
    currency: str
    payment_intent: str | None = None


class SettleStripeRow(BaseModel):
    """A purchase (by its PaymentIntent) or a refund (by its Stripe refund id)."""

    row_id: str
    stripe_id: str
    amount_minor: int
    status: str


def compare_stripe_payments(
    intents: Iterable[StripeObject], purchases: Iterable[SettleStripeRow]
) -> list[ReconcileItem]:
    """A succeeded PaymentIntent must be a purchase that captured the same amount."""
    by_intent = {p.stripe_id: p for p in purchases}
    items: list[ReconcileItem] = []
    for intent in intents:
        if intent.status != "succeeded":
            continue
        row = by_intent.get(intent.id)
        if row is None or row.amount_minor != intent.amount_minor:
            items.append(
                ReconcileItem(
                    provider="stripe",
                    kind="payment_unknown" if row is None else "amount_mismatch",
                    provider_ref=intent.id,
                    provider_amount_minor=intent.amount_minor,
                    currency=intent.currency,
                    settle_ref=row.row_id if row else NONE,
                    settle_amount_minor=row.amount_minor if row else None,
                )
            )
    return items


def compare_stripe_refunds(
    refunds: Iterable[StripeObject], settled: Iterable[SettleStripeRow]
) -> list[ReconcileItem]:
    """A refund Stripe made (or is making) must be one of Settle's refunds, same amount; a refund
    Settle counts as succeeded must not have failed at Stripe."""
    by_id = {r.stripe_id: r for r in settled}
    items: list[ReconcileItem] = []
    for refund in refunds:
        row = by_id.get(refund.id)
        kind = None
        if row is None:
            if refund.status in ("succeeded", "pending"):
                kind = "refund_unknown"
        elif row.amount_minor != refund.amount_minor:
            kind = "amount_mismatch"
        elif row.status == "succeeded" and refund.status in ("failed", "canceled"):
            kind = "refund_failed_at_stripe"
        if kind:
            items.append(
                ReconcileItem(
                    provider="stripe",
                    kind=kind,
                    provider_ref=refund.id,
                    provider_amount_minor=refund.amount_minor,
                    currency=refund.currency,
                    settle_ref=row.row_id if row else NONE,
                    settle_amount_minor=row.amount_minor if row else None,
                    detail=f"refund {refund.status} at Stripe for {refund.payment_intent}",
                )
            )
    return items


# --- the chain -----------------------------------------------------------------------------


class ChainTransfer(BaseModel):
    tx_hash: str
    log_index: int
    block_number: int
    sender: str
    recipient: str
    amount_minor: int


class SettlePayout(BaseModel):
    """A deposit's on-chain leg: the treasury's transaction, credited in the ledger or not."""

    deposit_id: str
    tx_hash: str
    amount_minor: int | None
    ledger_entry_id: str | None
    #: the deposit's Transfer log when its transaction is a batch shared with other deposits
    log_index: int | None = None


class SettleIntentCredit(BaseModel):
    tx_hash: str
    log_index: int
    intent_id: str
    status: str
    amount_minor: int
    ledger_entry_id: str | None


def compare_treasury(
    transfers: Iterable[ChainTransfer], payouts: Iterable[SettlePayout]
) -> list[ReconcileItem]:
    """Every USDC Transfer out of the treasury must be a payout with a ledger entry, same amount."""
    payouts = list(payouts)
    by_log = {(p.tx_hash.lower(), p.log_index): p for p in payouts if p.log_index is not None}
    by_tx = {p.tx_hash.lower(): p for p in payouts if p.log_index is None}
    items: list[ReconcileItem] = []
    for transfer in transfers:
        payout = by_log.get((transfer.tx_hash.lower(), transfer.log_index)) or by_tx.get(
            transfer.tx_hash.lower()
        )
        kind = None
        if payout is None:
            kind = "treasury_transfer_unknown"
        elif payout.ledger_entry_id is None:
            kind = "treasury_transfer_not_in_ledger"
        elif payout.amount_minor != transfer.amount_minor:
            kind = "amount_mismatch"
        if kind:
            items.append(
                ReconcileItem(
                    provider="chain",
                    kind=kind,
                    provider_ref=f"{transfer.tx_hash}:{transfer.log_index}",
                    provider_amount_minor=transfer.amount_minor,
                    currency="USDC",
                    settle_ref=payout.deposit_id if payout else NONE,
                    settle_amount_minor=payout.amount_minor if payout else None,
                    detail=f"block {transfer.block_number}, to {transfer.recipient}",
                )
            )
    return items


def compare_intent_transfers(
    transfers: Iterable[ChainTransfer],
    credits: Iterable[SettleIntentCredit],
    min_amount_minor: int = 1,
) -> list[ReconcileItem]:
    """Every qualifying transfer to an intent's address must be credited once, same amount.
    Dust is ignored here as the scanner ignores it (chain data is hostile)."""
    by_log = {(c.tx_hash.lower(), c.log_index): c for c in credits}
    items: list[ReconcileItem] = []
    for transfer in transfers:
        if transfer.amount_minor < max(min_amount_minor, 1):
            continue
        credit = by_log.get((transfer.tx_hash.lower(), transfer.log_index))
        if credit is not None and credit.ledger_entry_id is not None:
            if credit.amount_minor == transfer.amount_minor:
                continue
            kind = "amount_mismatch"
        else:
            kind = "intent_transfer_not_credited"
        items.append(
            ReconcileItem(
                provider="chain",
                kind=kind,
                provider_ref=f"{transfer.tx_hash}:{transfer.log_index}",
                provider_amount_minor=transfer.amount_minor,
                currency="USDC",
                settle_ref=credit.intent_id if credit else NONE,
                settle_amount_minor=credit.amount_minor if credit else None,
                detail=f"to {transfer.recipient}"
                + (f", Settle's transfer is {credit.status}" if credit else ""),
            )
        )
    return items


# --- Solana --------------------------------------------------------------------------------


class SolanaMint(BaseModel):
    mint: str
    signature: str
    block_time: int | None = None


class SettleTicket(BaseModel):
    purchase_id: str
    mint_address: str


def compare_mints(
    mints: Iterable[SolanaMint], tickets: Iterable[SettleTicket]
) -> list[ReconcileItem]:
    """Every mint the ticket authority made must be a ticket row."""
    known = {t.mint_address: t for t in tickets}
    return [
        ReconcileItem(
            provider="solana",
            kind="mint_without_ticket",
            provider_ref=mint.mint,
            provider_amount_minor=1,
            detail=f"minted in {mint.signature}",
        )
        for mint in mints
        if mint.mint not in known
    ]


class ReconcileStatus(BaseModel):
    """The ``status`` query: which report, and the providers still being read."""

    reconciliation_id: str | None = None
    step: str = "opening"
    pending: list[str] = Field(default_factory=list)
