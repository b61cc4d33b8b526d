"""Ticket metrics, named as the old service named them, computed from the database when
``/metrics`` is scraped: right across any number of worker processes and restarts (a counter kept
in one process would not be).

payments_processed_total, payment_amount_total_cents, refunds_processed_total,
refund_amount_total_cents, nfts_minted_total, nft_transfers_total, solana_wallet_balance_sol,
evm_treasury_usdc_balance (not a ticket figure, but read at the same moment),
emails_sent_total, emails_failed_total, webhooks_sent_total, webhooks_failed_total.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.models import NftTransferRecord, Notification, TicketPurchase, TicketRefund


@dataclass
class TicketSnapshot:
    payments: dict[str, tuple[int, int]] = field(default_factory=dict)  # currency -> (count, cents)
    refunds: dict[str, tuple[int, int]] = field(default_factory=dict)
    minted: int = 0
    transfers: int = 0
    notifications: dict[tuple[str, str], int] = field(
        default_factory=dict
    )  # (channel, status) -> n
    solana_balance_sol: float | None = None
    treasury_usdc: float | None = None


async def snapshot(
    reads: async_sessionmaker[AsyncSession],
    solana_balance_sol: float | None,
    treasury_usdc: float | None = None,
) -> TicketSnapshot:
    taken = TicketSnapshot(solana_balance_sol=solana_balance_sol, treasury_usdc=treasury_usdc)
    async with reads() as session:
        for currency, count, total in await session.execute(
            select(TicketPurchase.currency, func.count(), func.sum(TicketPurchase.amount_captured))
            .where(TicketPurchase.amount_captured > 0)
            .group_by(TicketPurchase.currency)
        ):
            taken.payments[currency] = (int(count), int(total or 0))
        for currency, count, total in await session.execute(
            select(TicketPurchase.currency, func.count(), func.sum(TicketRefund.amount_minor))
            .join(TicketPurchase, TicketPurchase.id == TicketRefund.purchase_id)
            .where(TicketRefund.status == "succeeded")
            .group_by(TicketPurchase.currency)
        ):
            taken.refunds[currency] = (int(count), int(total or 0))
        taken.minted = int(
            (
                await session.execute(
                    select(func.count()).where(TicketPurchase.mint_address.is_not(None))
                )
            ).scalar_one()
        )
        taken.transfers = int(
            (
                await session.execute(
                    select(func.count()).where(NftTransferRecord.status == "transferred")
                )
            ).scalar_one()
        )
        for channel, status, count in await session.execute(
            select(Notification.channel, Notification.status, func.count()).group_by(
                Notification.channel, Notification.status
            )
        ):
            taken.notifications[(channel, status)] = int(count)
    return taken


class TicketCollector(Collector):
    """Yields the metrics of the last snapshot (refreshed by the /metrics handler)."""

    def __init__(self) -> None:
        self.last = TicketSnapshot()

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        s = self.last
        payments = CounterMetricFamily(
            "payments_processed", "Ticket payments captured", labels=["currency"]
        )
        amount = CounterMetricFamily(
            "payment_amount_total_cents",
            "Captured ticket payments in minor units",
            labels=["currency"],
        )
        for currency, (count, cents) in s.payments.items():
            payments.add_metric([currency], count)
            amount.add_metric([currency], cents)
        refunds = CounterMetricFamily(
            "refunds_processed", "Ticket refunds made", labels=["currency"]
        )
        refunded = CounterMetricFamily(
            "refund_amount_total_cents", "Refunded amounts in minor units", labels=["currency"]
        )
        for currency, (count, cents) in s.refunds.items():
            refunds.add_metric([currency], count)
            refunded.add_metric([currency], cents)
        yield from (payments, amount, refunds, refunded)
        yield CounterMetricFamily("nfts_minted", "NFT tickets minted", value=s.minted)
        yield CounterMetricFamily("nft_transfers", "NFT tickets transferred", value=s.transfers)
        for channel, plural in (("email", "emails"), ("webhook", "webhooks")):
            yield CounterMetricFamily(
                f"{plural}_sent", f"{plural} sent", value=s.notifications.get((channel, "sent"), 0)
            )
            yield CounterMetricFamily(
                f"{plural}_failed",
                f"{plural} given up on",
                value=s.notifications.get((channel, "failed"), 0),
            )
        if s.solana_balance_sol is not None:
            yield GaugeMetricFamily(
                "solana_wallet_balance_sol",
                "SOL held by the ticket authority",
                value=s.solana_balance_sol,
            )
        if s.treasury_usdc is not None:
            yield GaugeMetricFamily(
                "evm_treasury_usdc_balance",
                "USDC held by the treasury wallet that M-Pesa deposits pay out from",
                value=s.treasury_usdc,
            )
