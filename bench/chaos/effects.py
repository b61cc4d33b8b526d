"""What the providers recorded, read at the end of the chaos run and put against Settle's rows
(:mod:`bench.chaos.accounting` does the matching): STK pushes and payments (Daraja sandbox),
PaymentIntents and refunds (Stripe sandbox), treasury transfers and registry entries (anvil's
logs), the payer's transfers to intents, NFT mints (Solana sandbox), emails (SMTP catcher),
webhook deliveries (the venue's receiver), and the ledger.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from eth_utils import keccak
from sqlalchemy import select

from bench.chaos.accounting import (
    CurrencyTotal,
    EffectCheck,
    by_identity,
    more_than_once,
    postings_by_currency,
    reconcile,
    tally,
)
from bench.chaos.operations import Operation
from bench.chaos.stack import ChaosStack
from providers.evm import TRANSFER_TOPIC, EvmClient, LocalSigner, LogFilter
from store.db import make_engine, make_session_factory
from store.models import (
    CredentialAnchorRecord,
    DepositTransfer,
    LedgerEntry,
    MpesaDeposit,
    MpesaPushAttempt,
    MpesaUnmatchedPayment,
    Notification,
    Posting,
    TicketPurchase,
    TicketRefund,
)

ANCHORED = "0x" + keccak(text="Anchored(bytes32,bytes32,string)").hex()
ROOT_ANCHORED = "0x" + keccak(text="RootAnchored(bytes32,uint32)").hex()
#: deposit statuses that say the customer paid
MPESA_PAID = {"credited", "paid", "sending_usdc"}


#: push attempt states whose prompt Settle cannot rule out: the answer was lost (the deposit
#: then failed rather than prompt again, or is still resolving it)
_MAY_HAVE_PROMPTED = frozenset({"sending", "unknown", "expired"})


def _prompts_accounted(deposits: Any, attempts: Any, prompts: Counter[str]) -> dict[str, int]:
    """Prompts per phone that Settle's rows account for: one per deposit that recorded its
    CheckoutRequestID, and at most one per deposit without one whose attempt rows say a push
    may have prompted (its answer was lost): the row holds that possibility, so the prompt the
    provider saw is not lost (a second prompt for the same deposit is still counted)."""
    uncertain = {a.deposit_id for a in attempts if a.state in _MAY_HAVE_PROMPTED}
    recorded = tally(d.phone for d in deposits if d.checkout_request_id)
    possible = tally(d.phone for d in deposits if not d.checkout_request_id and d.id in uncertain)
    accounted = dict(recorded)
    for phone, count in possible.items():
        unexplained = max(prompts.get(phone, 0) - recorded.get(phone, 0), 0)
        if unexplained:
            accounted[phone] = recorded.get(phone, 0) + min(unexplained, count)
    return accounted


def _held(recorded: bool, status: str, seen: int) -> int:
    """How many times Settle's row accounts for an effect: once when it records it; for an
    operation parked for an operator, the effect the provider saw (at most once) is held for
    that operator, not lost (a second one is still a duplicate)."""
    if recorded:
        return 1
    return min(seen, 1) if status == "needs_attention" else 0


@dataclass
class Effects:
    checks: list[EffectCheck] = field(default_factory=list)
    #: phones prompted (STK push) more than once, with how many prompts
    prompted_twice: dict[str, int] = field(default_factory=dict)
    #: customers charged more than once: phones paid twice, purchases with two charges
    charged_twice: dict[str, int] = field(default_factory=dict)
    postings: list[CurrencyTotal] = field(default_factory=list)
    #: entries whose postings do not sum to zero in some currency
    unbalanced_entries: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return sum(c.lost for c in self.checks)

    @property
    def duplicated(self) -> int:
        return sum(c.duplicated for c in self.checks)


def _word(address: str) -> str:
    return "0x" + address.lower().removeprefix("0x").rjust(64, "0")


def header(message: Any, name: str) -> str:
    """A header's value unfolded (a long one is folded onto a second line)."""
    return "".join(str(message.get(name, "")).splitlines()).strip()


async def collect(stack: ChaosStack, ops: list[Operation], quiet_seconds: float = 10.0) -> Effects:
    """Everything the providers recorded against Settle's rows. First a quiet moment, then the
    sandboxes' records, then the rows: an email is sent before its row says so, so reading in
    that order never finds an email whose row is about to be written."""
    settings = stack.settings
    effects = Effects()
    await asyncio.sleep(quiet_seconds)
    mail = [
        (header(m.message, "X-Settle-Reference"), header(m.message, "Message-ID"))
        for m in stack.mail.messages
    ]
    deliveries = list(stack.webhooks.deliveries)
    engine = make_engine(stack.database_url)
    sessions = make_session_factory(engine)
    try:
        async with sessions() as session:
            deposits = (await session.execute(select(MpesaDeposit))).scalars().all()
            unmatched = (await session.execute(select(MpesaUnmatchedPayment))).scalars().all()
            attempts = (await session.execute(select(MpesaPushAttempt))).scalars().all()
            purchases = (await session.execute(select(TicketPurchase))).scalars().all()
            refunds = (await session.execute(select(TicketRefund))).scalars().all()
            transfers = (await session.execute(select(DepositTransfer))).scalars().all()
            anchors = (await session.execute(select(CredentialAnchorRecord))).scalars().all()
            notifications = (await session.execute(select(Notification))).scalars().all()
            entries = (await session.execute(select(LedgerEntry))).scalars().all()
            postings = (
                await session.execute(
                    select(Posting.entry_id, Posting.currency, Posting.amount_minor)
                )
            ).all()
    finally:
        await engine.dispose()
    names = {op.id: op.label for op in ops if op.id}

    # -- M-Pesa: prompts and payments (Daraja sandbox) ------------------------------------------
    daraja = stack.daraja.state.sandbox
    txns = list(daraja.transactions.values())
    ours = {d.phone for d in deposits}
    prompts = tally(t.phone for t in txns if t.phone in ours)
    effects.prompted_twice.update({p: prompts[p] for p in more_than_once(prompts)})
    effects.checks.append(
        reconcile(
            "STK prompts (Daraja) / deposits that prompted",
            prompts,
            _prompts_accounted(deposits, attempts, prompts),
            names={d.phone: f"{names.get(d.id, d.id)} {d.status}" for d in deposits},
        )
    )
    paid = [t for t in txns if t.outcome.result_code == 0 and t.phone in ours]
    paid_by_phone = tally(t.phone for t in paid)
    effects.charged_twice.update(
        {f"phone {p}": paid_by_phone[p] for p in more_than_once(paid_by_phone)}
    )
    deposit_of = {d.checkout_request_id: d for d in deposits if d.checkout_request_id}
    payments = tally(t.checkout_request_id for t in paid)
    accounted = {
        d.checkout_request_id: _held(
            d.status in MPESA_PAID, d.status, payments.get(d.checkout_request_id, 0)
        )
        for d in deposits
        if d.checkout_request_id
    }
    # a success callback no deposit recorded is kept as an unmatched payment: open for an admin
    # (held, as a parked operation's effect), or already credited to a deposit or refunded by one
    kept = {u.checkout_request_id: u for u in unmatched}
    for checkout, payment in kept.items():
        if not accounted.get(checkout) and payment.status != "adopted":
            accounted[checkout] = min(payments.get(checkout, 0), 1)
    effects.checks.append(
        reconcile(
            "M-Pesa payments (STK, ResultCode 0) / deposits credited or parked, unmatched kept",
            payments,
            accounted,
            names={
                t.checkout_request_id: f"phone {t.phone}, deposit "
                + (
                    f"{names.get(deposit_of[t.checkout_request_id].id, deposit_of[t.checkout_request_id].id)} "
                    f"{deposit_of[t.checkout_request_id].status}"
                    if t.checkout_request_id in deposit_of
                    else f"none, kept as unmatched payment {kept[t.checkout_request_id].status}"
                    if t.checkout_request_id in kept
                    else "none with this CheckoutRequestID: "
                    + ", ".join(f"{d.id} {d.status}" for d in deposits if d.phone == t.phone)
                )
                for t in txns
            },
        )
    )
    # the ledger: one entry per credited deposit
    refs = tally(e.reference for e in entries)
    credited = [d for d in deposits if d.status == "credited"]
    effects.checks.append(
        reconcile(
            "ledger entries / deposits credited",
            {d.id: refs.get(d.mpesa_receipt or d.checkout_request_id or "", 0) for d in credited},
            {d.id: 1 for d in credited},
            names=names,
        )
    )

    # -- the chain: treasury USDC to deposits' wallets, payer transfers to intents, registry ---
    chain = EvmClient(stack.anvil_url, chain_id=31337)
    try:
        head = await chain.block_number()
        treasury = (
            settings.treasury_address
            or LocalSigner(settings.treasury_private_key.get_secret_value()).address
        )
        sent = await chain.get_logs_split(
            LogFilter(0, head, settings.usdc_contract_address, [TRANSFER_TOPIC, _word(treasury)]),
            5000,
        )
        registry = await chain.get_logs_split(
            LogFilter(0, head, settings.credential_registry_address, [[ANCHORED, ROOT_ANCHORED]]),
            5000,
        )
    finally:
        await chain.aclose()
    wallets = {d.wallet_address.lower(): d for d in deposits if d.wallet_address}
    to_wallet = tally(
        "0x" + log["topics"][2][-40:] for log in sent if "0x" + log["topics"][2][-40:] in wallets
    )
    effects.checks.append(
        reconcile(
            "treasury USDC transfers (anvil) / deposits with a USDC transaction",
            to_wallet,
            tally(w for w, d in wallets.items() if d.usdc_tx_hash),
            names={w: f"{names.get(d.id, d.id)} {d.status}" for w, d in wallets.items()},
        )
    )
    sent_by_us: dict[str, dict[str, Any]] = {}
    for op in ops:
        for transfer in op.detail.get("transfers", []):
            sent_by_us[transfer["tx_hash"].lower()] = {**transfer, "op": op.label}
    rows_by_tx = tally(t.tx_hash.lower() for t in transfers)
    effects.checks.append(
        reconcile(
            "USDC transfers to intents (anvil) / transfers recorded",
            {tx: 1 for tx in sent_by_us},
            {tx: rows_by_tx[tx] for tx in sent_by_us if rows_by_tx.get(tx)},
            names={tx: f"{t['op']}, {t['expect']}" for tx, t in sent_by_us.items()},
        )
    )
    effects.checks.append(
        reconcile(
            "ledger credits / intent transfers to credit (not dust, not late)",
            {tx: refs[tx] for tx in sent_by_us if refs.get(tx)},
            {tx: 1 for tx, t in sent_by_us.items() if t["expect"] == "credited"},
            names={tx: f"{t['op']}, {t['expect']}" for tx, t in sent_by_us.items()},
        )
    )
    tenant_anchors = [a for a in anchors if a.credential_id.startswith("cred-")]
    keys = tally(log["topics"][1].lower() for log in registry if log["topics"][0] == ANCHORED)
    roots = tally(log["topics"][1].lower() for log in registry if log["topics"][0] == ROOT_ANCHORED)
    effects.checks.append(
        reconcile(
            "registry entries (anvil) / credentials confirmed",
            {**keys, **roots},
            {
                **{
                    a.credential_key.lower(): 1
                    for a in tenant_anchors
                    if a.mode == "single" and a.status == "confirmed"
                },
                **{
                    a.batch_root.lower(): 1
                    for a in tenant_anchors
                    if a.mode == "batch" and a.status == "confirmed" and a.batch_root
                },
            },
            names={
                **{a.credential_key.lower(): a.credential_id for a in tenant_anchors},
                **{
                    (a.batch_root or "").lower(): f"batch root of {a.credential_id}"
                    for a in tenant_anchors
                },
            },
        )
    )

    # -- Stripe: charges and refunds --------------------------------------------------------------
    stripe = stack.stripe.state.sandbox
    charges = tally(
        str(i["metadata"].get("purchase_id"))
        for i in stripe.intents.values()
        if i["status"] == "succeeded"
    )
    effects.charged_twice.update({f"purchase {p}": charges[p] for p in more_than_once(charges)})
    purchase_names = {p.id: f"{names.get(p.id, p.id)} {p.status}" for p in purchases}
    effects.checks.append(
        reconcile(
            "Stripe charges (PaymentIntents succeeded) / purchases charged",
            charges,
            {p.id: _held(p.amount_captured > 0, p.status, charges.get(p.id, 0)) for p in purchases},
            names=purchase_names,
        )
    )
    stripe_refunds = tally(
        str(r["metadata"].get("purchase_id"))
        for r in stripe.refunds.values()
        if r["status"] in ("succeeded", "pending")
    )
    settled_refunds = Counter(r.purchase_id for r in refunds if r.status == "succeeded")
    for p in purchases:  # a refund made by the purchase itself (its mint failed) has no row
        if p.amount_refunded and not settled_refunds.get(p.id):
            settled_refunds[p.id] = 1
    effects.checks.append(
        reconcile(
            "Stripe refunds / refunds recorded",
            stripe_refunds,
            settled_refunds,
            names=purchase_names,
        )
    )

    # -- Solana: one mint per ticket --------------------------------------------------------------
    mints = tally(stack.solana.mints)
    effects.checks.append(
        reconcile(
            "NFT mints (Solana) / tickets minted",
            mints,
            tally(p.mint_address for p in purchases),
            names={p.mint_address: purchase_names[p.id] for p in purchases if p.mint_address},
        )
    )

    # -- notifications: emails and webhooks -------------------------------------------------------
    # at-least-once with a stable identity: counted as the receiver dedupes (by Message-ID,
    # by webhook-id), a resend of the same identity reported as redelivered
    caught, resent_mail = by_identity(mail)
    message_ids: dict[str, set[str]] = {}
    for reference, message_id in mail:
        message_ids.setdefault(reference, set()).add(message_id)
    sent_emails = {n.id: 1 for n in notifications if n.channel == "email" and n.status == "sent"}
    emails = reconcile(
        "emails (SMTP catcher, by Message-ID) / emails recorded sent",
        caught,
        sent_emails,
        names={
            n.id: f"{n.kind} {n.status}, Message-IDs {', '.join(sorted(message_ids[n.id]))}"
            if n.id in message_ids
            else f"{n.kind} {n.status}, no Message-ID"
            for n in notifications
        },
    )
    emails.redelivered = resent_mail
    effects.checks.append(emails)
    # a webhook's key is its webhook-id: a second delivery of one id is a resend
    delivered, resent_hooks = by_identity((d, d) for d in deliveries)
    hooks = reconcile(
        "webhook deliveries (venue, by webhook-id) / webhooks recorded sent",
        delivered,
        {n.id: 1 for n in notifications if n.channel == "webhook" and n.status == "sent"},
        names={n.id: f"{n.kind} {n.status}" for n in notifications},
    )
    hooks.redelivered = resent_hooks
    effects.checks.append(hooks)

    # -- the ledger as a whole --------------------------------------------------------------------
    effects.postings = postings_by_currency((c, a) for _, c, a in postings)
    per_entry: Counter[tuple[str, str]] = Counter()
    for entry_id, currency, amount in postings:
        per_entry[(entry_id, currency)] += amount
    effects.unbalanced_entries = sorted({e for (e, _), net in per_entry.items() if net})
    return effects
