"""Money as integer minor units.

Floats never carry money in Settle: amounts are ``int`` counts of a currency's smallest unit
(KES cents, USD cents, USDC base units with 6 decimals). These helpers are the only place where
human amounts and minor units meet.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from enum import StrEnum


class Currency(StrEnum):
    KES = "KES"
    USD = "USD"
    USDC = "USDC"


#: decimal places of each currency's minor unit
EXPONENT: dict[Currency, int] = {Currency.KES: 2, Currency.USD: 2, Currency.USDC: 6}


def to_minor(amount: int | str | Decimal, currency: Currency) -> int:
    """Whole or decimal amount (never a float) to minor units; excess precision is refused."""
    if isinstance(
        amount, float
    ):  # pragma: no cover - guarded by types, kept for callers without them
        raise TypeError("money is never a float")
    try:
        value = Decimal(amount)
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {amount!r}") from exc
    if not value.is_finite():
        raise ValueError(f"not a finite amount: {amount!r}")
    scaled = value.scaleb(EXPONENT[currency])
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{currency} has at most {EXPONENT[currency]} decimal places")
    return int(scaled)


def from_minor(minor: int, currency: Currency) -> Decimal:
    """Minor units back to a decimal amount, for display only."""
    return Decimal(minor).scaleb(-EXPONENT[currency])


def format_minor(minor: int, currency: Currency) -> str:
    """A fixed-point string such as ``"150.00"``: how amounts leave the API."""
    exponent = EXPONENT[currency]
    return f"{from_minor(minor, currency):.{exponent}f}"
