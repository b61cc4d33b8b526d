"""The reconciliation's comparisons (domain/reconcile.py): pure functions over the provider's
records and Settle's rows, so every kind of mismatch is checked here without any provider."""

from __future__ import annotations

from datetime import UTC, datetime

from domain.mpesa import TransactionStatusResult
from domain.reconcile import (
    DARAJA_RECEIPT_KINDS,
    NONE,
    ChainTransfer,
    DarajaPayment,
    ReconcileItem,
    SettleDeposit,
    SettleIntentCredit,
    SettlePayout,
    SettleStripeRow,
    SettleTicket,
    SettleUnmatched,
    SolanaMint,
    StripeObject,
    compare_daraja,
    compare_intent_transfers,
    compare_mints,
    compare_stripe_payments,
    compare_stripe_refunds,
    compare_treasury,
    confirm_with_daraja,
    previous_day,
    provider_report,
)

TREASURY = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def deposit(checkout: str, *, amount: int = 15_000, credited: bool = True) -> SettleDeposit:
    return SettleDeposit(
        deposit_id=f"dep-{checkout}",
        checkout_request_id=checkout,
        receipt=f"R{checkout}",
        amount_minor=amount,
        status="credited" if credited else "needs_attention",
        credited=credited,
    )


def test_daraja_payments_match_credited_deposits_or_are_items() -> None:
    payments = [
        DarajaPayment(checkout_request_id="ok", receipt="Rok", amount_minor=15_000),
        DarajaPayment(checkout_request_id="stranger", receipt="RX1", amount_minor=20_000),
        DarajaPayment(checkout_request_id="parked", receipt="Rparked", amount_minor=15_000),
        DarajaPayment(checkout_request_id="short", receipt="Rshort", amount_minor=10_000),
    ]
    deposits = [deposit("ok"), deposit("parked", credited=False), deposit("short")]
    items = {i.provider_ref: i for i in compare_daraja(payments, deposits)}
    assert set(items) == {"RX1", "Rparked", "Rshort"}
    assert items["RX1"].kind == "payment_unknown" and items["RX1"].settle_ref == NONE
    assert items["RX1"].provider_amount_minor == 20_000 and items["RX1"].receipt == "RX1"
    assert items["Rparked"].kind == "payment_not_credited"
    assert items["Rparked"].settle_ref == "dep-parked"
    assert items["Rshort"].kind == "amount_mismatch"
    assert (items["Rshort"].provider_amount_minor, items["Rshort"].settle_amount_minor) == (
        10_000,
        15_000,
    )
    assert compare_daraja(payments[:1], deposits) == []


def test_unmatched_payments_are_items_until_an_admin_settles_them() -> None:
    """Reconcile read only the deposits: a payment an admin credited to another deposit (or
    refunded) stayed ``payment_unknown`` every day, and one still open read like a stranger's."""
    payments = [
        DarajaPayment(checkout_request_id=c, receipt=f"R{c}", amount_minor=15_000)
        for c in ("waiting", "offered", "credited", "refunded", "stranger")
    ]
    unmatched = [
        SettleUnmatched(payment_id=f"u-{c}", checkout_request_id=c, status=status)
        for c, status in (
            ("waiting", "open"),
            ("offered", "offered"),
            ("credited", "credited"),
            ("refunded", "refunded"),
        )
    ]
    unmatched[2].deposit_id, unmatched[3].resolution_reference = "dep-other", "REV123"
    items = {i.provider_ref: i for i in compare_daraja(payments, [], unmatched)}
    assert set(items) == {"Rwaiting", "Roffered", "Rstranger"}
    assert items["Rwaiting"].kind == "payment_unmatched"
    assert items["Rwaiting"].settle_ref == "u-waiting"
    assert "unmatched-payments" in items["Rwaiting"].detail
    assert items["Roffered"].kind == "payment_unmatched"
    assert items["Rstranger"].kind == "payment_unknown"
    assert "payment_unmatched" in DARAJA_RECEIPT_KINDS  # Daraja is asked about it too


def test_transaction_status_confirms_or_contradicts_a_daraja_item() -> None:
    item = ReconcileItem(
        provider="daraja", kind="payment_unknown", provider_ref="RX1", receipt="RX1"
    )

    def result(code: int, amount: int | None = None) -> TransactionStatusResult:
        return TransactionStatusResult(
            originator_conversation_id="o",
            conversation_id="c",
            result_code=code,
            result_desc="No completed transaction found" if code else "ok",
            receipt="RX1",
            amount_minor=amount,
            transaction_status="Completed" if code == 0 else None,
        )

    confirmed = confirm_with_daraja(item, result(0, 20_000), 60)
    assert confirmed.kind == "payment_unknown" and confirmed.provider_amount_minor == 20_000
    assert "Daraja confirms RX1: Completed" in confirmed.detail
    forged = confirm_with_daraja(item, result(1), 60)
    assert forged.kind == "callback_not_confirmed" and "No completed" in forged.detail
    silent = confirm_with_daraja(item, None, 60)
    assert silent.kind == "payment_unknown" and "did not answer within 60 s" in silent.detail


def test_stripe_payments_and_refunds() -> None:
    intents = [
        StripeObject(id="pi_ok", status="succeeded", amount_minor=5000, currency="usd"),
        StripeObject(id="pi_new", status="succeeded", amount_minor=700, currency="usd"),
        StripeObject(id="pi_off", status="succeeded", amount_minor=900, currency="usd"),
        # never paid: nothing to reconcile
        StripeObject(id="pi_open", status="requires_action", amount_minor=100, currency="usd"),
    ]
    purchases = [
        SettleStripeRow(row_id="p1", stripe_id="pi_ok", amount_minor=5000, status="completed"),
        SettleStripeRow(row_id="p2", stripe_id="pi_off", amount_minor=1000, status="completed"),
    ]
    items = {i.provider_ref: i for i in compare_stripe_payments(intents, purchases)}
    assert {k: v.kind for k, v in items.items()} == {
        "pi_new": "payment_unknown",
        "pi_off": "amount_mismatch",
    }
    assert items["pi_off"].settle_ref == "p2" and items["pi_off"].settle_amount_minor == 1000

    refunds = [
        StripeObject(id="re_ok", status="succeeded", amount_minor=500, currency="usd"),
        StripeObject(
            id="re_new", status="succeeded", amount_minor=300, currency="usd", payment_intent="pi_x"
        ),
        StripeObject(id="re_gone", status="failed", amount_minor=200, currency="usd"),
        StripeObject(id="re_failed_unknown", status="failed", amount_minor=200, currency="usd"),
    ]
    settled = [
        SettleStripeRow(row_id="r1", stripe_id="re_ok", amount_minor=500, status="succeeded"),
        SettleStripeRow(row_id="r2", stripe_id="re_gone", amount_minor=200, status="succeeded"),
    ]
    items = {i.provider_ref: i for i in compare_stripe_refunds(refunds, settled)}
    assert {k: v.kind for k, v in items.items()} == {
        "re_new": "refund_unknown",
        "re_gone": "refund_failed_at_stripe",
    }
    assert "pi_x" in items["re_new"].detail and items["re_new"].settle_ref == NONE


def transfer(tx: str, amount: int, *, to: str = "0xabc", index: int = 0) -> ChainTransfer:
    return ChainTransfer(
        tx_hash=tx,
        log_index=index,
        block_number=7,
        sender=TREASURY,
        recipient=to,
        amount_minor=amount,
    )


def test_treasury_transfers_need_a_credited_payout_of_the_same_amount() -> None:
    transfers = [
        transfer("0xAA", 1_000_000),
        transfer("0xbb", 2_000_000),
        transfer("0xcc", 3_000_000),
        transfer("0xdd", 4_000_000),
    ]
    payouts = [
        SettlePayout(deposit_id="d1", tx_hash="0xaa", amount_minor=1_000_000, ledger_entry_id="e1"),
        SettlePayout(deposit_id="d3", tx_hash="0xcc", amount_minor=3_000_000, ledger_entry_id=None),
        SettlePayout(deposit_id="d4", tx_hash="0xdd", amount_minor=4_100_000, ledger_entry_id="e4"),
    ]
    items = {i.provider_ref: i for i in compare_treasury(transfers, payouts)}
    assert {k: (v.kind, v.settle_ref) for k, v in items.items()} == {
        "0xbb:0": ("treasury_transfer_unknown", NONE),
        "0xcc:0": ("treasury_transfer_not_in_ledger", "d3"),
        "0xdd:0": ("amount_mismatch", "d4"),
    }


def test_intent_transfers_need_a_credit_and_dust_is_ignored() -> None:
    transfers = [
        transfer("0x01", 5_000_000),
        transfer("0x02", 5_000_000),
        transfer("0x03", 0),  # zero-value poisoning: not a deposit
        transfer("0x04", 9, index=3),  # dust below the minimum
        transfer("0x05", 6_000_000),
    ]
    credits = [
        SettleIntentCredit(
            tx_hash="0x01",
            log_index=0,
            intent_id="i1",
            status="credited",
            amount_minor=5_000_000,
            ledger_entry_id="e1",
        ),
        SettleIntentCredit(
            tx_hash="0x05",
            log_index=0,
            intent_id="i5",
            status="late",
            amount_minor=6_000_000,
            ledger_entry_id=None,
        ),
    ]
    items = {i.provider_ref: i for i in compare_intent_transfers(transfers, credits, 10)}
    assert {k: (v.kind, v.settle_ref) for k, v in items.items()} == {
        "0x02:0": ("intent_transfer_not_credited", NONE),
        "0x05:0": ("intent_transfer_not_credited", "i5"),
    }
    assert "late" in items["0x05:0"].detail


def test_every_authority_mint_is_a_ticket() -> None:
    mints = [SolanaMint(mint="M1", signature="s1"), SolanaMint(mint="M2", signature="s2")]
    items = compare_mints(mints, [SettleTicket(purchase_id="p1", mint_address="M1")])
    assert [(i.kind, i.provider_ref, i.settle_ref) for i in items] == [
        ("mint_without_ticket", "M2", NONE)
    ]
    assert compare_mints([], []) == []


def test_the_schedule_reconciles_the_previous_utc_day() -> None:
    window = previous_day(datetime(2026, 12, 1, 0, 30, 5, tzinfo=UTC))
    assert window.since == datetime(2026, 11, 30, tzinfo=UTC)
    assert window.until == datetime(2026, 12, 1, tzinfo=UTC)


def test_a_provider_reports_at_most_the_cap_and_says_how_many_were_left_out() -> None:
    items = [
        ReconcileItem(provider="stripe", kind="payment_unknown", provider_ref=f"pi_{i}")
        for i in range(7)
    ]
    report = provider_report("stripe", 9, items, limit=5)
    assert report.checked == 9 and len(report.items) == 5
    assert [i.provider_ref for i in report.items[:4]] == ["pi_0", "pi_1", "pi_2", "pi_3"]
    assert report.items[-1].kind == "items_truncated" and "3 more" in report.items[-1].detail
    assert provider_report("stripe", 9, items[:5], limit=5).items == items[:5]


def test_a_batched_payout_is_matched_by_its_own_transfer_log() -> None:
    """Deposits paid in one Disperse transaction share its hash: each is matched by its log."""
    batch = [
        transfer("0xbatch", 1_000_000, index=0),
        transfer("0xbatch", 2_000_000, index=1),
        transfer("0xbatch", 3_000_000, index=2),
    ]
    payouts = [
        SettlePayout(
            deposit_id="d1",
            tx_hash="0xBATCH",
            amount_minor=1_000_000,
            ledger_entry_id="e1",
            log_index=0,
        ),
        SettlePayout(
            deposit_id="d2",
            tx_hash="0xbatch",
            amount_minor=2_000_000,
            ledger_entry_id="e2",
            log_index=1,
        ),
    ]
    items = {i.provider_ref: i for i in compare_treasury(batch, payouts)}
    assert {k: (v.kind, v.settle_ref) for k, v in items.items()} == {
        "0xbatch:2": ("treasury_transfer_unknown", NONE),
    }
