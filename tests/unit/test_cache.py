"""The provider TTL cache, the cached FX rate, and the pure parts of the queue metrics."""

from __future__ import annotations

import asyncio
import socket
from decimal import Decimal

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from activities.fx import FxActivities
from api.metrics_queues import KindStats, histogram_buckets, quantiles
from domain.fx import FxQuoteInput
from providers.cache import CacheRegistry, TTLCache
from providers.fx import CachedRateProvider
from runtime.temporal import metrics_runtime
from worker import CacheMetrics


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class CountingRates:
    name = "counting"

    def __init__(self, rate: str = "129.00") -> None:
        self.calls = 0
        self.rate = Decimal(rate)

    async def kes_per_usdc(self) -> Decimal:
        self.calls += 1
        await asyncio.sleep(0)
        return self.rate


async def test_hits_misses_expiry_and_flush() -> None:
    clock = Clock()
    cache: TTLCache[int] = TTLCache("c", 10, clock=clock)
    loads = 0

    async def load() -> int:
        nonlocal loads
        loads += 1
        return loads

    assert cache.stats().hit_ratio is None
    assert await cache.get_or_load("k", load) == 1
    assert await cache.get_or_load("k", load) == 1
    assert (cache.hits, cache.misses, cache.stats().size) == (1, 1, 1)
    assert cache.stats().hit_ratio == 0.5
    clock.now += 10  # expired exactly at the TTL
    assert cache.stats().size == 0
    assert await cache.get_or_load("k", load) == 2
    assert (cache.hits, cache.misses) == (1, 2)
    assert cache.clear() == 1
    assert await cache.get_or_load("k", load) == 3
    assert (cache.hits, cache.misses, cache.stats().size) == (1, 3, 1)


async def test_concurrent_misses_share_one_load_and_failures_are_not_cached() -> None:
    rates = CountingRates()
    cache: TTLCache[Decimal] = TTLCache("fx", 60)
    results = await asyncio.gather(*(cache.get_or_load("r", rates.kes_per_usdc) for _ in range(5)))
    assert results == [Decimal("129.00")] * 5 and rates.calls == 1

    async def boom() -> Decimal:
        raise RuntimeError("provider down")

    with pytest.raises(RuntimeError):
        await cache.get_or_load("other", boom)
    assert cache.stats().size == 1  # only "r"


async def test_max_entries_drops_the_oldest() -> None:
    cache: TTLCache[str] = TTLCache("small", 60, max_entries=2)

    async def load() -> str:
        return "value"

    for key in ("a", "b", "c"):
        await cache.get_or_load(key, load)
    assert cache.stats().size == 2
    await cache.get_or_load("a", load)
    assert cache.misses == 4  # "a" was dropped, loaded again


async def test_a_zero_ttl_caches_nothing() -> None:
    rates = CountingRates()
    cache: TTLCache[Decimal] = TTLCache("off", 0)
    for _ in range(3):
        await cache.get_or_load("r", rates.kes_per_usdc)
    assert rates.calls == 3 and cache.stats().size == 0


async def test_fx_quote_activity_reads_the_rate_once_per_ttl() -> None:
    rates = CountingRates()
    registry = CacheRegistry()
    cached = CachedRateProvider(rates, registry.register(TTLCache[Decimal]("fx_rate", 60)))
    activities = FxActivities(cached)
    first = await activities.quote(FxQuoteInput(amount_kes_minor=15_000))
    second = await activities.quote(FxQuoteInput(amount_kes_minor=15_000))
    assert first == second and first.source == "counting" and rates.calls == 1
    [stats] = registry.stats()
    assert stats.as_dict() == {
        "name": "fx_rate",
        "size": 1,
        "hits": 1,
        "misses": 1,
        "hit_ratio": 0.5,
        "ttl_seconds": 60,
    }
    assert registry.flush() == {"fx_rate": 1}
    await activities.quote(FxQuoteInput(amount_kes_minor=15_000))
    assert rates.calls == 2
    with pytest.raises(ValueError, match="registered already"):
        registry.register(TTLCache[Decimal]("fx_rate", 1))


def test_queue_stats_and_histogram_buckets() -> None:
    stats = KindStats(open=5, processed=10, failed=2, cancelled=1, needs_attention=2)
    assert stats.queue_stats() == {
        "running": 3,
        "completed": 7,
        "failed": 2,
        "needs_attention": 2,
        "cancelled": 1,
    }
    buckets = dict(histogram_buckets([0.5, 3.0, 4000.0]))
    assert buckets["1.0"] == 1 and buckets["5.0"] == 2 and buckets["3600.0"] == 2
    assert buckets["+Inf"] == 3
    # the API serves the recent window as quantile gauges (nearest rank), none for an empty one
    assert quantiles([float(n) for n in range(1, 101)]) == {0.5: 50.0, 0.9: 90.0, 0.99: 99.0}
    assert quantiles([7.0]) == {0.5: 7.0, 0.9: 7.0, 0.99: 7.0}
    assert quantiles([]) == {}


async def test_the_worker_publishes_its_cache_counters_on_the_sdk_metrics_endpoint() -> None:
    registry = CacheRegistry()
    cache = registry.register(TTLCache[Decimal]("fx_rate", 60))
    rates = CountingRates()
    await cache.get_or_load("r", rates.kes_per_usdc)
    await cache.get_or_load("r", rates.kes_per_usdc)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    runtime = metrics_runtime(f"127.0.0.1:{port}")
    CacheMetrics(runtime.metric_meter, registry).publish()
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    values = {
        (s.name, s.labels["cache"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("settle_cache_")
    }
    assert values == {
        ("settle_cache_hits_total", "fx_rate"): 1,
        ("settle_cache_misses_total", "fx_rate"): 1,
        ("settle_cache_entries", "fx_rate"): 1,
    }
