"""Stripe's webhook: HTTP over :mod:`operations.stripe_events` (verify, deduplicate, signal)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from api.deps import ContextDep
from api.errors import error_responses
from domain.errors import BadRequest
from operations import stripe_events

router = APIRouter(tags=["webhooks"])


@router.post(
    "/webhooks/stripe",
    responses=error_responses(400, 503),
    summary="Stripe events (called by Stripe)",
)
async def stripe_webhook(request: Request, ctx: ContextDep) -> dict[str, Any]:
    """Verify ``Stripe-Signature`` (bad or older than the tolerance: 400), ignore events already
    handled, and signal the purchase whose PaymentIntent it is. 2xx only once that is durable."""
    signature = request.headers.get("stripe-signature")
    if not signature:
        raise BadRequest("missing Stripe-Signature header", field="Stripe-Signature")
    payload = await request.body()
    return await stripe_events.receive(ctx, payload, signature)
