"""``circuit_breaker_state{provider}`` on the API's ``/metrics``: 0 closed, 1 open, 2 half-open.

Read from the database when ``/metrics`` is scraped, where every worker counts the breakers, so
every API replica reports the fleet's state (aggregate with ``max by (provider)``). Every
provider is labelled, closed or not.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.breakers import GAUGE, BreakerState, Provider
from store import breakers


async def gauges(reads: async_sessionmaker[AsyncSession], scope: str) -> dict[str, int]:
    states = await breakers.states(reads, scope)
    return {
        p.value: int(GAUGE[BreakerState(states[p].state)]) if p in states else 0 for p in Provider
    }


class BreakerCollector(Collector):
    """Yields the states of the last read (refreshed by the /metrics handler)."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "circuit_breaker_state",
            "Circuit breaker per provider: 0 closed, 1 open (its queue held), 2 half-open",
            labels=["provider"],
        )
        for provider, value in sorted(self.last.items()):
            family.add_metric([provider], value)
        yield family
