"""Ticket figures read from the database when ``/metrics/json`` is asked, and the wallet balances.

In Prometheus format (``/metrics``) only the balances are served from here
(``solana_wallet_balance_sol``, ``evm_treasury_usdc_balance``: gauges). The old service's
business counters (``payments_processed_total``, ``refunds_processed_total``,
``nfts_minted_total``, ``emails_sent_total``, ...) are counted by the worker when the event
happens (``activities/business_metrics.py``): a count of rows is not a counter (the Cleanup
schedule deletes old notifications, and a row count would drop). ``/metrics/json`` still reports
these row totals under their old names, as totals of what the database holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily
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

    def collect(self) -> Iterator[GaugeMetricFamily]:
        s = self.last
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
