"""Reconciliation's provider I/O: each provider's own record of a window, compared with Settle's.

One activity per provider, on that provider's queue (its rate limit and pause apply). Each reads
the provider's records for the window, looks up Settle's rows by the provider's ids, and returns
only the mismatches (:mod:`domain.reconcile` compares): a day of records stays out of the
workflow's history. ``reconcile.open`` and ``reconcile.record`` keep the report (queue ``db``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from domain import reconcile as compare
from domain.mpesa import TransactionStatusRequested
from domain.reconcile import (
    ChainTransfer,
    OpenReconciliation,
    ProviderCheck,
    ProviderReport,
    ReconcileResult,
    RecordReport,
    SolanaMint,
    StatusQuery,
    StripeObject,
)
from providers.daraja import DarajaClient
from providers.evm import EvmClient, LogFilter
from providers.evm.erc20 import TRANSFER_TOPIC, decode_transfer
from providers.solana.client import SolanaTicketClient
from providers.stripe import StripePayments
from runtime.logging import get_logger
from store import reconciliations as store
from store.db import reads_of

log = get_logger("activities.reconcile")


def _unix(moment: datetime) -> int:
    return int(moment.timestamp())


def _topic(address: str) -> str:
    return "0x" + address.lower().removeprefix("0x").rjust(64, "0")


class ReconcileActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        stripe: StripePayments,
        evm: EvmClient,
        treasury_address: str,
        usdc_address: str,
        max_log_range: int,
        solana: SolanaTicketClient,
        daraja: DarajaClient,
        status_result_url: str,
    ) -> None:
        self._sessions, self._reads = sessions, reads_of(sessions)
        self._daraja = daraja
        #: ``.../reconciliations/mpesa-status-result/<token>``; the report id is appended
        self._status_result_url = status_result_url.rstrip("/")
        self._stripe, self._evm, self._solana = stripe, evm, solana
        self._treasury, self._usdc, self._max_range = treasury_address, usdc_address, max_log_range

    # --- the report ------------------------------------------------------------------------

    @activity.defn(name="reconcile.open")
    async def open(self, request: OpenReconciliation) -> str:
        async with self._sessions.begin() as session:
            return await store.open_report(session, request)

    @activity.defn(name="reconcile.record")
    async def record(self, request: RecordReport) -> ReconcileResult:
        async with self._sessions.begin() as session:
            result = await store.record(session, request.reconciliation_id, request.reports)
        log.info(
            "reconciliation recorded",
            reconciliation_id=result.reconciliation_id,
            clean=result.clean,
            items=result.items,
        )
        return result

    # --- providers -------------------------------------------------------------------------

    @activity.defn(name="reconcile.daraja")
    async def daraja(self, request: ProviderCheck) -> ProviderReport:
        """Daraja has no list of payments to ask: its side is what it told Settle, the kept STK
        callbacks of the window; each success must be a credited deposit of the same amount (or an
        unmatched payment an admin credited or refunded)."""
        async with self._reads() as session:
            payments = await store.kept_payments(session, request.since, request.until)
            checkout_ids = {p.checkout_request_id for p in payments}
            deposits = await store.deposits_for(session, checkout_ids)
            unmatched = await store.unmatched_for(session, checkout_ids)
        return compare.provider_report(
            "daraja", len(payments), compare.compare_daraja(payments, deposits, unmatched)
        )

    @activity.defn(name="reconcile.transaction_status")
    async def transaction_status(self, request: StatusQuery) -> TransactionStatusRequested:
        """Ask Daraja about one receipt; the result comes to the API's ResultURL, which signals
        the Reconcile workflow. Read-only, safe to repeat."""
        base = f"{self._status_result_url}/{request.reconciliation_id}"
        return await self._daraja.transaction_status(
            receipt=request.receipt,
            result_url=base,
            timeout_url=f"{base}/timeout",
            originator_id=request.originator_id,
        )

    @activity.defn(name="reconcile.stripe")
    async def stripe(self, request: ProviderCheck) -> ProviderReport:
        """PaymentIntents and refunds Stripe lists as created in the window."""
        gte, lte = _unix(request.since), _unix(request.until) - 1
        intents = [
            StripeObject(id=i.id, status=i.status, amount_minor=i.amount, currency=i.currency)
            for i in await self._stripe.list_payment_intents(gte, lte)
        ]
        refunds = [
            StripeObject(
                id=r.id,
                status=r.status,
                amount_minor=r.amount,
                currency=r.currency,
                payment_intent=r.payment_intent,
            )
            for r in await self._stripe.list_refunds(gte, lte)
        ]
        async with self._reads() as session:
            purchases = await store.purchases_for(session, {i.id for i in intents})
            settled = await store.refunds_for(session, {r.id for r in refunds})
        return compare.provider_report(
            "stripe",
            len(intents) + len(refunds),
            compare.compare_stripe_payments(intents, purchases)
            + compare.compare_stripe_refunds(refunds, settled),
        )

    @activity.defn(name="reconcile.chain")
    async def chain(self, request: ProviderCheck) -> ProviderReport:
        """USDC Transfers in the window's blocks: out of the treasury (payouts) and into intents'
        addresses (deposits), the latter read like the scanner reads them (every USDC Transfer)."""
        await self._evm.ensure_chain()
        blocks = await self._block_range(_unix(request.since), _unix(request.until))
        if blocks is None:
            return ProviderReport(provider="chain")
        first, last = blocks
        logs = await self._evm.get_logs_split(
            LogFilter(first, last, self._usdc, [TRANSFER_TOPIC]), self._max_range
        )
        transfers = [
            ChainTransfer(
                tx_hash=t.tx_hash.lower(),
                log_index=t.log_index,
                block_number=t.block_number,
                sender=t.sender,
                recipient=t.recipient,
                amount_minor=t.amount,
            )
            for t in (decode_transfer(entry) for entry in logs)
            if t is not None
        ]
        treasury = self._treasury.lower()
        out = [t for t in transfers if t.sender.lower() == treasury]
        async with self._reads() as session:
            payouts = await store.payouts_for(session, {t.tx_hash for t in out})
            addresses = await store.intent_addresses(
                session, request.chain, {t.recipient for t in transfers}
            )
            incoming = [t for t in transfers if t.recipient in addresses]
            credits = await store.intent_credits(
                session, request.chain, {t.tx_hash for t in incoming}
            )
        return compare.provider_report(
            "chain",
            len(out) + len(incoming),
            compare.compare_treasury(out, payouts)
            + compare.compare_intent_transfers(incoming, credits, request.min_intent_amount_minor),
        )

    async def _block_range(self, since: int, until: int) -> tuple[int, int] | None:
        """The first and last blocks stamped in ``[since, until)``; None when there are none."""
        head = await self._evm.block_number()
        first = await self._first_block_at(since, head)
        last = await self._first_block_at(until, head) - 1
        return (first, last) if first <= last else None

    async def _first_block_at(self, moment: int, head: int) -> int:
        """The lowest block stamped at or after ``moment`` (head + 1 when none is)."""
        low, high = 0, head + 1
        while low < high:
            middle = (low + high) // 2
            if await self._stamp(middle) >= moment:
                high = middle
            else:
                low = middle + 1
        return low

    async def _stamp(self, number: int) -> int:
        header = await self._evm.block(number)
        if header is None:
            raise LookupError(f"block {number} not found")
        value = header["timestamp"]
        return int(value, 16) if isinstance(value, str) else int(value)

    @activity.defn(name="reconcile.solana")
    async def solana(self, request: ProviderCheck) -> ProviderReport:
        """Mints the ticket authority made in the window, each a ticket row."""
        mints = [
            SolanaMint(mint=m.mint, signature=m.signature, block_time=m.block_time)
            for m in await self._solana.ticket_mints(_unix(request.since), _unix(request.until) - 1)
        ]
        async with self._reads() as session:
            tickets = await store.tickets_for(session, {m.mint for m in mints})
        return compare.provider_report("solana", len(mints), compare.compare_mints(mints, tickets))
