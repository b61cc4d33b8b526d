"""FX activities (queue ``fx``): the rate, fetched once per deposit and kept in its history."""

from __future__ import annotations

from temporalio import activity

from domain.fx import FxQuote, FxQuoteInput, kes_to_usdc_minor
from providers.fx import RateProvider


class FxActivities:
    def __init__(self, rates: RateProvider) -> None:
        self._rates = rates

    @activity.defn(name="fx.quote")
    async def quote(self, request: FxQuoteInput) -> FxQuote:
        rate = await self._rates.kes_per_usdc()
        return FxQuote(
            amount_kes_minor=request.amount_kes_minor,
            usdc_minor=kes_to_usdc_minor(request.amount_kes_minor, rate),
            kes_per_usdc=str(rate),
            source=self._rates.name,
        )
