"""Refund requests: the buyer asks, the venue approves (the refund starts) or declines."""

from __future__ import annotations

import uuid
from datetime import UTC

from pydantic import BaseModel, ConfigDict, Field, StrictInt
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth import Principal
from api.timestamps import UtcDateTime
from domain.errors import Conflict, Forbidden, NotFound, RefundRefused
from operations.context import Context
from operations.ticket_refunds import start_refund
from operations.tickets_common import NAMESPACE, Accepted, is_staff, visible
from store import tickets
from store.models import TicketRefundRequest


class RefundRequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: StrictInt | None = Field(
        default=None, gt=0, description="minor units; omit for everything left"
    )
    reason: str | None = Field(default=None, max_length=500)


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=500)
    #: approve only: void the ticket even when the refund is partial
    void_ticket: bool = False


class RefundRequestView(BaseModel):
    id: str
    purchase_id: str
    requested_by: str
    amount_minor: int | None
    reason: str | None
    status: str
    decided_by: str | None
    decision_reason: str | None
    refund_id: str | None
    created_at: UtcDateTime


def _request_view(row: TicketRefundRequest) -> RefundRequestView:
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    return RefundRequestView(
        id=row.id,
        purchase_id=row.purchase_id,
        requested_by=row.requested_by,
        amount_minor=row.amount_minor,
        reason=row.reason,
        status=row.status,
        decided_by=row.decided_by,
        decision_reason=row.decision_reason,
        refund_id=row.refund_id,
        created_at=created,
    )


async def ask_for_refund(
    ctx: Context, principal: Principal, purchase_id: str, body: RefundRequestBody
) -> RefundRequestView:
    """Record the buyer's request (pending), if anything is left to refund."""
    async with ctx.sessions.begin() as session:
        purchase = await visible(session, purchase_id, principal)
        left = purchase.amount_captured - purchase.amount_refunded
        if left <= 0:
            raise RefundRefused("nothing is left to refund on this purchase", field="amount")
        if body.amount is not None and body.amount > left:
            raise RefundRefused(f"at most {left} is left to refund", field="amount")
        row = TicketRefundRequest(
            purchase_id=purchase.id,
            tenant=purchase.tenant,
            requested_by=principal.subject,
            amount_minor=body.amount,
            reason=body.reason,
            status="pending",
        )
        session.add(row)
        await session.flush()
        return _request_view(row)


async def list_refund_requests(
    ctx: Context,
    principal: Principal,
    *,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[RefundRequestView]:
    """The venue sees its tenant's requests; a buyer sees their own. Oldest first."""
    query = select(TicketRefundRequest).where(TicketRefundRequest.tenant == principal.tenant)
    if not is_staff(principal):
        query = query.where(TicketRefundRequest.requested_by == principal.subject)
    if status is not None:
        query = query.where(TicketRefundRequest.status == status)
    query = query.order_by(TicketRefundRequest.created_at, TicketRefundRequest.id)
    async with ctx.reads() as session:
        rows = (await session.execute(query.limit(limit).offset(offset))).scalars()
        return [_request_view(r) for r in rows]


async def _pending_request(
    session: AsyncSession, request_id: str, principal: Principal
) -> TicketRefundRequest:
    row = (
        await session.execute(
            select(TicketRefundRequest)
            .where(TicketRefundRequest.id == request_id)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if row is None or row.tenant != principal.tenant:
        raise NotFound("refund request not found")
    if not is_staff(principal):
        raise Forbidden("refund requests are decided by the venue (venue_admin or admin)")
    if row.status != "pending":
        raise Conflict(f"the refund request was already {row.status}")
    return row


async def approve_refund_request(
    ctx: Context, principal: Principal, request_id: str, decision: DecisionBody | None = None
) -> Accepted:
    """Approve a pending request (venue staff): the refund it asked for starts. When the refund
    does not start, the request is pending again."""
    decision = decision or DecisionBody()
    refund_id = str(uuid.uuid5(NAMESPACE, f"refund-request\0{request_id}"))
    async with ctx.sessions.begin() as session:
        row = await _pending_request(session, request_id, principal)
        row.status, row.decided_by, row.refund_id = "approved", principal.subject, refund_id
        row.decision_reason = decision.reason
        purchase = await tickets.get(session, row.purchase_id)
        amount, reason = row.amount_minor, row.reason
    try:
        return await start_refund(
            ctx,
            purchase,
            refund_id,
            amount=amount,
            reason=reason,
            void_ticket=decision.void_ticket,
            principal=principal,
        )
    except Exception:
        async with ctx.sessions.begin() as session:  # nothing started: pending again
            again = await session.get(TicketRefundRequest, request_id)
            if again is not None:
                again.status, again.decided_by, again.refund_id = "pending", None, None
                again.decision_reason = None
        raise


async def decline_refund_request(
    ctx: Context, principal: Principal, request_id: str, decision: DecisionBody | None = None
) -> RefundRequestView:
    """Decline a pending request with a reason the buyer reads (venue staff)."""
    async with ctx.sessions.begin() as session:
        row = await _pending_request(session, request_id, principal)
        row.status, row.decided_by = "declined", principal.subject
        row.decision_reason = (decision or DecisionBody()).reason
        await session.flush()
        return _request_view(row)
