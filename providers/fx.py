"""FX rate providers. The sandbox uses a fixed rate from settings; a real provider implements the
same one-method protocol (KES per USDC, as an exact Decimal)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Protocol


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
