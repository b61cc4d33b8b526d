"""Currency conversion for the M-Pesa deposit's on-chain leg (``fx.quote``, queue ``fx``)."""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_FLOOR, Decimal

from pydantic import BaseModel, Field

from domain.money import EXPONENT, Currency


class FxQuoteInput(BaseModel):
    amount_kes_minor: int = Field(gt=0)


class FxQuote(BaseModel):
    amount_kes_minor: int
    usdc_minor: int
    #: KES per 1 USDC, as a decimal string (exact, never a float)
    kes_per_usdc: str
    source: str
    #: set on the quote given at initiation: honoured for payments until ``expires_at``
    quoted_at: datetime | None = None
    expires_at: datetime | None = None


def kes_to_usdc_minor(amount_kes_minor: int, kes_per_usdc: Decimal) -> int:
    """KES cents -> USDC base units at ``kes_per_usdc``, rounded down: Settle never sends more
    value than it received."""
    if kes_per_usdc <= 0:
        raise ValueError("an FX rate must be positive")
    kes = Decimal(amount_kes_minor).scaleb(-EXPONENT[Currency.KES])
    usdc = (kes / kes_per_usdc).scaleb(EXPONENT[Currency.USDC])
    return int(usdc.to_integral_value(rounding=ROUND_FLOOR))


def deviation_percent(quoted: Decimal, current: Decimal) -> Decimal:
    """How far ``current`` is from ``quoted``, in percent of the quote (always >= 0)."""
    if quoted <= 0:
        raise ValueError("an FX rate must be positive")
    return abs(current - quoted) * 100 / quoted
