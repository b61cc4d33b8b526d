"""Ticket refunds issued by the venue: check what is left to refund, start ``Refund``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictInt
from sqlalchemy import select

from api.auth import Principal
from domain.errors import Forbidden, InvalidInput, RefundRefused
from domain.search import OperationKind
from domain.tickets import RefundInput
from operations.context import Context
from operations.tickets_common import (
    Accepted,
    derived_id,
    is_staff,
    start_workflow,
    ticket_config,
    visible,
)
from store.models import TicketPurchase, TicketRefund
from workflows.tickets import Refund, refund_workflow_id


class RefundBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: StrictInt | None = Field(
        default=None, description="minor units; omit for everything left"
    )
    reason: str | None = Field(default=None, max_length=500)
    #: void the ticket (freeze or burn its NFT, put the place back on sale) even when partial
    void_ticket: bool = False


async def refund(
    ctx: Context,
    principal: Principal,
    purchase_id: str,
    body: RefundBody,
    idempotency_key: str | None = None,
) -> Accepted:
    """Refund all (no amount) or part of a ticket, by the venue (``venue_admin`` or ``admin``);
    a buyer is a 403 (they ask with a refund request)."""
    if body.amount is not None and body.amount <= 0:
        raise InvalidInput("amount must be a positive number of minor units", field="amount")
    async with ctx.sessions() as session:
        purchase = await visible(session, purchase_id, principal)
    if not is_staff(principal):
        raise Forbidden(
            "refunds are issued by the venue; ask for one with "
            f"POST /api/v1/tickets/{purchase_id}/refund-requests"
        )
    refund_id = derived_id(principal, idempotency_key, f"refund:{purchase_id}")
    return await start_refund(
        ctx,
        purchase,
        refund_id,
        amount=body.amount,
        reason=body.reason,
        void_ticket=body.void_ticket,
        principal=principal,
    )


async def start_refund(
    ctx: Context,
    purchase: TicketPurchase,
    refund_id: str,
    *,
    amount: int | None,
    reason: str | None,
    void_ticket: bool,
    principal: Principal,
) -> Accepted:
    """Check what is left to refund and start the ``Refund`` workflow (idempotent by id)."""
    async with ctx.sessions() as session:
        already = await session.get(TicketRefund, refund_id)
        reserved = sum(
            r.amount_minor
            for r in (
                await session.execute(
                    select(TicketRefund).where(
                        TicketRefund.purchase_id == purchase.id, TicketRefund.status == "reserved"
                    )
                )
            ).scalars()
        )
    if already is None:
        if purchase.amount_captured == 0:
            raise RefundRefused("nothing was captured for this purchase (yet)", field="amount")
        left = purchase.amount_captured - purchase.amount_refunded - reserved
        if (amount or left) > left or left <= 0:
            raise RefundRefused(
                f"at most {left} is left to refund on this purchase", field="amount"
            )
    workflow_id = refund_workflow_id(refund_id)
    request = RefundInput(
        refund_id=refund_id,
        purchase_id=purchase.id,
        tenant=purchase.tenant,
        amount_minor=amount,
        requested_by=principal.subject,
        reason=reason,
        buyer_email=purchase.buyer_email,
        event_id=purchase.event_id,
        seat=purchase.seat,
        mint=purchase.mint_address,
        void_ticket=void_ticket,
        config=ticket_config(ctx.settings),
        task_queue_prefix=ctx.settings.task_queue_prefix,
    )
    await start_workflow(
        ctx, Refund.run, request, workflow_id, OperationKind.TICKET_REFUND, principal
    )
    return Accepted(
        id=refund_id,
        workflow_id=workflow_id,
        status="pending",
        status_url=f"/api/v1/tickets/purchase/{purchase.id}",
    )
