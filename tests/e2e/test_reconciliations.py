"""Reconciliation end to end (issue 14 §5): ``POST /api/v1/reconciliations`` runs the real
``Reconcile`` workflow on the dev server, against the stack's Daraja and Stripe sandboxes, anvil
and the Solana RPC sandbox, and the report lists each mismatch with its evidence and an alert.

One mismatch is planted per provider, each the way it could really happen: a payment at Daraja
whose callback matches no deposit of Settle's, a USDC transfer the treasury's wallet writer sent
with no ledger entry, a refund made in the Stripe dashboard, a mint by the ticket authority with
no ticket row. A window with a credited deposit and a paid ticket in it is clean.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from solders.keypair import Keypair
from sqlalchemy import func, select
from temporalio.testing import ActivityEnvironment

import worker as worker_module
from activities.evm import EvmWriteActivities, WriterConfig
from domain.evm import TransferUsdcInput
from domain.mpesa import DepositStatus
from domain.nft import TicketMetadata
from providers.daraja import DarajaClient
from providers.evm import EvmClient, LocalSigner
from providers.solana.client import SolanaTicketClient
from providers.stripe import StripePayments
from runtime.schedules import ensure_reconcile_schedule, reconcile_schedule_id
from store.models import MpesaCallbackRecord, MpesaUnmatchedPayment, Reconciliation
from tests.e2e.test_deposit_intents import create as create_intent
from tests.e2e.test_deposit_intents import short_intent, until_status
from tests.e2e.test_mpesa_deposit_api import PHONE_OK, initiate
from tests.e2e.test_tickets import buy
from tests.e2e.test_tickets import until as purchase_until
from tests.fixtures.chain import new_wallet
from tests.fixtures.events import create_event
from tests.fixtures.stack import SANDBOX_SECRETS, Stack, eventually, unique_tenant

PATH = "/api/v1/reconciliations"


def iso(moment: datetime) -> str:
    return moment.isoformat()


async def reconcile(stack: Stack, since: datetime, until: datetime) -> dict[str, Any]:
    """Start a reconciliation as the platform's operator and wait for its report."""
    started = await stack.api.post(
        PATH, json={"since": iso(since), "until": iso(until)}, headers=stack.platform_admin()
    )
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "running"
    report_id = started.json()["id"]

    async def read() -> dict[str, Any]:
        answer = await stack.api.get(f"{PATH}/{report_id}", headers=stack.platform_admin())
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    return dict(
        await eventually(
            read, lambda r: r["status"] != "running", timeout=60, what="the reconciliation"
        )
    )


async def settled_window_end() -> datetime:
    """A window's end after everything so far: Stripe and Solana stamp whole seconds."""
    await asyncio.sleep(1.1)
    return datetime.now(UTC)


async def quiet(stack: Stack, still_for: float = 4.0, within: float = 60.0) -> None:
    """Until nothing has moved at any provider for ``still_for`` seconds: the suite's earlier
    tests share the stack, and a callback they left in flight must not land in this test's window
    (the sandbox Daraja calls back up to a few seconds late)."""

    async def fingerprint() -> tuple[int, ...]:
        async with stack.sessions() as session:
            kept = (
                await session.execute(select(func.count()).select_from(MpesaCallbackRecord))
            ).scalar_one()
        daraja = stack.daraja_state
        return (
            int(kept),
            daraja.stk_pushes,
            sum(t.callbacks_sent for t in daraja.transactions.values()),
            stack.stripe_state.requests,
            stack.solana.sandbox.transactions,
            await stack.chain.client.nonce(stack.chain.treasury, "latest"),
        )

    deadline = asyncio.get_running_loop().time() + within
    last, since = await fingerprint(), asyncio.get_running_loop().time()
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.5)
        now = await fingerprint()
        if now != last:
            last, since = now, asyncio.get_running_loop().time()
        elif asyncio.get_running_loop().time() - since >= still_for:
            return
    pytest.fail(f"the stack never went quiet: {last}")


# --- planting one mismatch per provider ----------------------------------------------------


async def pay_daraja_behind_settles_back(stack: Stack) -> str:
    """A customer pays Settle's shortcode from a prompt Settle never sent (another system using
    the shortcode, a replayed push): Daraja calls Settle's callback URL with a real receipt."""
    settings = stack.settings
    daraja = DarajaClient(
        base_url=stack.daraja.url,
        consumer_key=SANDBOX_SECRETS["daraja_consumer_key"],
        consumer_secret=SANDBOX_SECRETS["daraja_consumer_secret"],
        shortcode=settings.daraja_shortcode,
        passkey=SANDBOX_SECRETS["daraja_passkey"],
    )
    try:
        # an amount no open deposit has, so the callback is not offered to one
        pushed = await daraja.stk_push(
            phone=PHONE_OK,
            amount_kes=700 + secrets.randbelow(200),
            callback_url=worker_module.mpesa_callback_url(settings),
            account_reference="elsewhere",
            description="not through Settle",
        )
    finally:
        await daraja.aclose()

    async def kept() -> MpesaCallbackRecord | None:
        async with stack.sessions() as session:
            query = select(MpesaCallbackRecord).where(
                MpesaCallbackRecord.checkout_request_id == pushed.checkout_request_id
            )
            return (await session.execute(query)).scalar_one_or_none()

    record = await eventually(kept, lambda r: r is not None, what="Daraja's callback")
    assert record.result_code == 0
    return str(pushed.checkout_request_id)


async def send_from_treasury_without_ledger(stack: Stack) -> tuple[str, int]:
    """The treasury's own wallet writer sends USDC that no payout of Settle's accounts for."""
    settings = stack.settings
    evm = EvmClient(settings.evm_rpc_url, chain_id=settings.evm_chain_id)
    writer = EvmWriteActivities(
        evm,
        LocalSigner(settings.treasury_private_key.get_secret_value()),
        stack.sessions,
        WriterConfig(
            usdc_address=settings.usdc_contract_address,
            stuck_after_seconds=settings.evm_stuck_after_seconds,
            fee_bump_percent=settings.evm_fee_bump_percent,
            priority_fee_gwei=settings.evm_priority_fee_gwei,
            max_fee_gwei=settings.evm_max_fee_gwei,
            poll_interval_seconds=settings.evm_poll_interval_seconds,
        ),
    )
    amount = 1_230_000 + secrets.randbelow(1000)
    try:
        sent = await ActivityEnvironment().run(
            writer.transfer_usdc,
            TransferUsdcInput(
                idempotency_key=f"recon-test:{uuid.uuid4()}", to=new_wallet(), amount_minor=amount
            ),
        )
        await eventually(
            lambda: evm.receipt(sent.tx_hash), lambda r: r is not None, what="the transfer mined"
        )
    finally:
        await evm.aclose()
    return sent.tx_hash.lower(), amount


async def refund_in_stripe_dashboard(stack: Stack) -> tuple[str, str]:
    """A payment and its refund made at Stripe directly, not through Settle."""
    stripe = StripePayments(
        SANDBOX_SECRETS["stripe_api_key"], api_base=stack.settings.stripe_api_base
    )
    payment = await stripe.pay(
        amount_minor=4200,
        currency="usd",
        payment_method="pm_card_visa",
        idempotency_key=f"recon-test-pay-{uuid.uuid4()}",
        metadata={},
    )
    refund = await stripe.refund(
        payment_intent=payment.id,
        amount_minor=1500,
        idempotency_key=f"recon-test-refund-{uuid.uuid4()}",
        metadata={},
    )
    return payment.id, refund.id


async def mint_without_ticket(stack: Stack) -> str:
    """The ticket authority mints an NFT that no ticket row of Settle's has."""
    solana = SolanaTicketClient(stack.solana.url, stack.solana.authority)
    ticket_id = str(uuid.uuid4())
    try:
        mint, _, signature = await solana.mint_ticket(
            ticket_id,
            str(Keypair().pubkey()),
            TicketMetadata(
                name="Stray",
                symbol="STRAY",
                uri="https://tickets.example/stray",
                event_id="none",
                seat="none",
                ticket_id=ticket_id,
            ),
        )
    finally:
        await solana.aclose()
    assert signature is not None
    return str(mint)


async def pay_an_expired_intent(stack: Stack) -> tuple[str, str]:
    """USDC sent to an intent's address after it expired: recorded (late), never credited."""
    tenant = unique_tenant()
    intent_id = await short_intent(stack, "ugo", tenant, 2_000_000, ttl_seconds=1)
    intent = await until_status(stack, intent_id, stack.auth("ugo", tenant), {"expired"})
    receipt = await stack.chain.pay(intent["address"], 2_000_000)
    return str(receipt["transactionHash"]).lower(), intent_id


async def test_one_planted_mismatch_per_provider_is_reported_with_evidence(stack: Stack) -> None:
    await quiet(stack)
    since = datetime.now(UTC) - timedelta(seconds=1)
    late_tx, intent_id = await pay_an_expired_intent(stack)
    checkout = await pay_daraja_behind_settles_back(stack)
    tx_hash, sent = await send_from_treasury_without_ledger(stack)
    payment_intent, refund_id = await refund_in_stripe_dashboard(stack)
    mint = await mint_without_ticket(stack)
    report = await reconcile(stack, since, await settled_window_end())

    assert report["status"] == "completed" and report["clean"] is False, report

    def planted(provider: str, kind: str, found: Callable[[dict[str, Any]], bool]) -> Any:
        """The item about what this test planted (the suite's other tests share the stack)."""
        matching = [
            i
            for i in report["items"]
            if (i["provider"], i["kind"]) == (provider, kind) and found(i)
        ]
        assert len(matching) == 1, (provider, kind, report["items"])
        return matching[0]

    # the callback was kept as an open unmatched payment (its own item kind since Reconcile
    # reads them: one an admin credited or refunded is not reported again)
    daraja = planted("daraja", "payment_unmatched", lambda i: checkout in i["detail"])
    async with stack.sessions() as session:
        kept_as = await session.scalar(
            select(MpesaUnmatchedPayment).where(
                MpesaUnmatchedPayment.checkout_request_id == checkout
            )
        )
    assert kept_as is not None and kept_as.status == "open"
    assert daraja["settle_ref"] == kept_as.id
    # Daraja's own Transaction Status confirms the receipt: a real payment, not a forged claim
    assert "Daraja confirms" in daraja["detail"], daraja
    assert daraja["provider_amount_minor"] >= 70_000

    chain = planted(
        "chain", "treasury_transfer_unknown", lambda i: i["provider_ref"].startswith(tx_hash)
    )
    assert (chain["provider_amount_minor"], chain["currency"], chain["settle_ref"]) == (
        sent,
        "USDC",
        "none",
    )

    late = planted(
        "chain", "intent_transfer_not_credited", lambda i: i["provider_ref"].startswith(late_tx)
    )
    assert late["settle_ref"] == intent_id
    assert late["provider_amount_minor"] == 2_000_000 and "late" in late["detail"]

    refund = planted("stripe", "refund_unknown", lambda i: i["provider_ref"] == refund_id)
    assert refund["provider_amount_minor"] == 1500
    assert refund["settle_ref"] == "none" and payment_intent in refund["detail"]
    planted("stripe", "payment_unknown", lambda i: i["provider_ref"] == payment_intent)

    solana = planted("solana", "mint_without_ticket", lambda i: i["provider_ref"] == mint)
    assert solana["settle_ref"] == "none"

    # (at least: the suite's other tests share the stack, and may finish work in this window)
    checked = report["checked"]
    assert checked["daraja"] >= 1 and checked["stripe"] >= 2
    assert checked["chain"] >= 2 and checked["solana"] >= 1

    # each mismatch is an open platform alert
    alerts = await stack.api.get(
        "/api/v1/alerts?status=open&limit=500", headers=stack.platform_admin()
    )
    open_ids = {a["id"] for a in alerts.json() if a["condition"] == "reconciliation_mismatch"}
    assert {i["alert_id"] for i in report["items"]} <= open_ids
    assert all(i["alert_id"] for i in report["items"])

    # the admins are told once, by email (ADMIN_EMAILS)
    reference = f"reconciliation:{report['id']}"
    mails = await stack.mail.wait_for(
        lambda ms: any(reference in str(m.message["X-Settle-Reference"]) for m in ms)
    )
    (told,) = [m for m in mails if reference in str(m.message["X-Settle-Reference"])]
    assert told.recipients == ["ops@settle.test"]
    assert f"{len(report['items'])} mismatch(es)" in told.message["Subject"]

    listed = await stack.api.get(PATH, headers=stack.platform_admin())
    assert report["id"] in {r["id"] for r in listed.json()}


async def test_a_window_of_matched_operations_is_clean(stack: Stack) -> None:
    await quiet(stack)
    since = datetime.now(UTC) - timedelta(seconds=1)
    tenant = unique_tenant()
    # an M-Pesa deposit: Daraja's callback, USDC out of the treasury, the ledger credit
    user = stack.auth("alice", tenant)
    started = await initiate(stack, user, phone=PHONE_OK, amount=150)
    assert started.status_code == 202, started.text
    await stack.wait_for_deposit(started.json()["id"], {DepositStatus.CREDITED}, timeout=60)
    # an on-chain deposit: a Transfer to the intent's address, credited
    intent = await create_intent(stack, user, "3.25")
    assert intent.status_code == 201, intent.text
    await stack.chain.pay(intent.json()["address"], 3_250_000)
    await until_status(stack, intent.json()["id"], user, {"paid"})
    # a ticket: the Stripe payment and the Solana mint
    event = await create_event(stack, tenant)
    _, accepted = await buy(stack, user, event)
    await purchase_until(
        stack, accepted["id"], user, lambda v: v["status"] == "completed", "the ticket"
    )
    report = await reconcile(stack, since, await settled_window_end())

    assert report["status"] == "completed", report
    assert (report["clean"], report["items"]) == (True, [])
    # a clean report tells nobody
    assert not any(
        report["id"] in str(m.message["X-Settle-Reference"]) for m in stack.mail.messages
    )
    # the providers' records were there and matched, not absent
    assert report["checked"]["daraja"] >= 1
    assert report["checked"]["chain"] >= 2  # the payout and the intent's deposit
    assert report["checked"]["stripe"] >= 1
    assert report["checked"]["solana"] >= 1


async def reconciliation_rows(stack: Stack) -> int:
    async with stack.sessions() as session:
        return int(
            (await session.execute(select(func.count()).select_from(Reconciliation))).scalar_one()
        )


async def test_only_the_platforms_operator_reconciles(stack: Stack) -> None:
    tenant = unique_tenant()
    now = datetime.now(UTC)
    window = {"since": iso(now - timedelta(hours=1)), "until": iso(now)}
    before = await reconciliation_rows(stack)
    for roles in (("user",), ("venue_admin",), ("user", "admin")):
        headers = stack.auth("someone", tenant, roles)
        assert (await stack.api.post(PATH, json=window, headers=headers)).status_code == 403
        assert (await stack.api.get(PATH, headers=headers)).status_code == 403
    assert (await stack.api.post(PATH, json=window)).status_code == 401

    # bad windows: 422 naming the field, nothing started
    for body, field in (
        ({"since": window["until"], "until": window["since"]}, "until"),
        ({"since": window["since"], "until": iso(now + timedelta(hours=1))}, "until"),
        ({"since": iso(now - timedelta(days=40)), "until": window["until"]}, "since"),
        ({"since": window["since"]}, "until"),
    ):
        refused = await stack.api.post(PATH, json=body, headers=stack.platform_admin())
        assert refused.status_code == 422, refused.text
        assert field in refused.text
    assert await reconciliation_rows(stack) == before


async def test_the_daily_schedule_reconciles_the_previous_utc_day(stack: Stack) -> None:
    """The worker's schedule (created as at worker start), triggered now: a report of the whole
    previous UTC day, opened by the workflow itself."""
    settings = stack.settings
    await ensure_reconcile_schedule(stack.temporal, settings)
    await ensure_reconcile_schedule(stack.temporal, settings)  # a restart updates it in place
    handle = stack.temporal.get_schedule_handle(reconcile_schedule_id(settings))
    try:
        described = await handle.describe()
        # the server keeps the cron expression ("30 0 * * *") as a calendar
        (calendar,) = described.schedule.spec.calendars
        assert settings.reconcile_cron == "30 0 * * *"
        assert (calendar.hour[0].start, calendar.minute[0].start) == (0, 30)
        assert described.schedule.policy.overlap.name == "SKIP"
        await handle.trigger()

        async def scheduled() -> Reconciliation | None:
            async with stack.sessions() as session:
                query = select(Reconciliation).where(
                    Reconciliation.workflow_id.startswith(f"{reconcile_schedule_id(settings)}-run"),
                    Reconciliation.status == "completed",
                )
                return (await session.execute(query)).scalars().first()

        row = await eventually(scheduled, lambda r: r is not None, timeout=60, what="the run")
    finally:
        await handle.delete()
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert (row.since, row.until) == (today - timedelta(days=1), today)
    assert row.requested_by == "schedule"
    # nothing of this stack is older than today: an empty, clean day
    assert row.clean is True and row.checked == {"daraja": 0, "stripe": 0, "chain": 0, "solana": 0}
