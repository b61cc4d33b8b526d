"""Stripe's events: verified, deduplicated, and handed to the workflow they concern."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from domain.errors import BadRequest, ServiceUnavailable, StripeRejected
from domain.tickets import StripeEventSignal
from operations.context import Context
from providers.stripe import verify_webhook
from runtime.logging import get_logger
from runtime.temporal import temporal_unreachable
from store import tickets
from store.models import StripeEvent
from workflows.tickets import Refund, TicketPurchase, refund_workflow_id

log = get_logger("api.stripe_webhooks")

HANDLED = {
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.requires_action",
    "payment_intent.canceled",
    "charge.refunded",
}
#: refund events, for refunds Stripe answered ``pending``
REFUND_EVENTS = {"refund.updated", "refund.failed", "charge.refund.updated"}


async def receive(ctx: Context, payload: bytes, signature: str) -> dict[str, Any]:
    """Verify the ``Stripe-Signature`` of ``payload`` (bad or older than the tolerance: 400),
    ignore an event already handled, and signal the workflow it concerns; the answer says
    whether it was a duplicate. Returns only once that is durable."""
    settings = ctx.settings
    try:
        event = verify_webhook(
            payload,
            signature,
            settings.stripe_webhook_secret.get_secret_value(),
            settings.stripe_webhook_tolerance_seconds,
        )
    except StripeRejected as exc:
        raise BadRequest(exc.message, field="Stripe-Signature") from exc
    event_id, kind = str(event.get("id")), str(event.get("type"))
    obj = (event.get("data") or {}).get("object") or {}
    intent_id = obj.get("id") if kind.startswith("payment_intent.") else obj.get("payment_intent")
    async with ctx.reads() as session:
        if await session.get(StripeEvent, event_id) is not None:
            return {"received": True, "duplicate": True}
        purchase = await tickets.by_payment_intent(session, str(intent_id)) if intent_id else None
    refund_id = (obj.get("metadata") or {}).get("refund_id")
    if kind in REFUND_EVENTS and (refund_id or purchase is not None):
        # a refund Settle asked for: its Refund workflow (or the purchase compensating itself)
        # waits for Stripe's verdict
        refund_event = StripeEventSignal(
            event_id=event_id,
            type=kind,
            payment_intent=intent_id,
            status=obj.get("status"),
            failure_message=obj.get("failure_reason"),
            refund=obj.get("id"),
        )
        if isinstance(refund_id, str) and refund_id:
            await _signal(
                ctx.temporal, refund_workflow_id(refund_id), Refund.stripe_event, refund_event
            )
        elif purchase is not None:
            await _signal(
                ctx.temporal, purchase.workflow_id, TicketPurchase.stripe_event, refund_event
            )
    elif kind in HANDLED and purchase is not None:
        error = (obj.get("last_payment_error") or {}).get("message")
        signal = StripeEventSignal(
            event_id=event_id,
            type=kind,
            payment_intent=intent_id,
            status=obj.get("status"),
            failure_message=error,
        )
        await _signal(ctx.temporal, purchase.workflow_id, TicketPurchase.stripe_event, signal)
    async with ctx.sessions.begin() as session:
        first = await tickets.first_stripe_event(session, event_id, kind, intent_id)
    log.info("stripe event", event_id=event_id, type=kind, payment_intent=intent_id, first=first)
    return {"received": True, "duplicate": not first}


async def _signal(
    temporal: Client, workflow_id: str, signal: Any, event: StripeEventSignal
) -> None:
    """Hand the event to its workflow; one that is gone (finished long ago) is fine."""
    try:
        await temporal.get_workflow_handle(workflow_id).signal(signal, event)
    except (RPCError, RuntimeError) as exc:
        if isinstance(exc, RPCError) and exc.status == RPCStatusCode.NOT_FOUND:
            return
        if not temporal_unreachable(exc):
            raise
        raise ServiceUnavailable("could not hand the event to its workflow; not accepted") from exc
