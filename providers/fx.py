"""FX rate providers. The sandbox uses a fixed rate from settings; a real provider implements the
same one-method protocol (KES per USDC, as an exact Decimal)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Protocol

from providers.cache import TTLCache


class RateProvider(Protocol):
    name: str

    async def kes_per_usdc(self) -> Decimal: ...


class FixedRateProvider:
    """One rate, from settings (``FX_KES_PER_USDC``)."""

    name = "fixed"

    def __init__(self, kes_per_usdc: str) -> None:
        try:
            rate = Decimal(kes_per_usdc)
        except InvalidOperation as exc:
            raise ValueError(f"FX_KES_PER_USDC is not a number: {kes_per_usdc!r}") from exc
        if not rate.is_finite() or rate <= 0:
            raise ValueError("FX_KES_PER_USDC must be a positive number")
        self._rate = rate

    async def kes_per_usdc(self) -> Decimal:
        return self._rate


class CachedRateProvider:
    """Another provider's rate, reused for ``ttl_seconds`` (``FX_CACHE_SECONDS``).

    A deposit's quote is still taken once and kept in its workflow history: the cache only spares
    the rate source a call per deposit, it never changes a quote already taken.
    """

    def __init__(self, inner: RateProvider, cache: TTLCache[Decimal]) -> None:
        self._inner = inner
        self._cache = cache
        self.name = inner.name

    async def kes_per_usdc(self) -> Decimal:
        return await self._cache.get_or_load(("KES", "USDC"), self._inner.kes_per_usdc)
