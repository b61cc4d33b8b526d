"""Ticket purchases, refunds and NFT transfers: HTTP over :mod:`operations` (the ticket modules)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query

from api.deps import ContextDep, CurrentUser
from api.errors import error_responses
from operations import ticket_purchases, ticket_refund_requests, ticket_refunds, ticket_transfers
from operations.ticket_purchases import PurchaseBody, PurchaseView
from operations.ticket_refund_requests import DecisionBody, RefundRequestBody, RefundRequestView
from operations.ticket_refunds import RefundBody
from operations.ticket_transfers import TransferBody
from operations.tickets_common import Accepted

router = APIRouter(prefix="/api/v1/tickets", tags=["tickets"])

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)]


@router.post(
    "/purchase",
    status_code=202,
    response_model=Accepted,
    responses=error_responses(401, 409, 422, 503),
)
async def purchase(
    body: PurchaseBody,
    principal: CurrentUser,
    ctx: ContextDep,
    idempotency_key: IdempotencyKey = None,
) -> Accepted:
    """Buy a place of a catalogue event at the catalogue's price: the place is held for
    ``TICKET_HOLD_SECONDS``, the card charged, the NFT minted to ``buyer_wallet``, the buyer
    emailed. A place someone else holds or bought is a 409."""
    return await ticket_purchases.start_purchase(ctx, principal, body, idempotency_key)


@router.get(
    "/purchase/{purchase_id}", response_model=PurchaseView, responses=error_responses(401, 404)
)
async def get_purchase(purchase_id: str, principal: CurrentUser, ctx: ContextDep) -> PurchaseView:
    return await ticket_purchases.get_purchase(ctx, principal, purchase_id)


@router.post(
    "/{purchase_id}/refund",
    status_code=202,
    response_model=Accepted,
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
async def refund(
    purchase_id: str,
    body: RefundBody,
    principal: CurrentUser,
    ctx: ContextDep,
    idempotency_key: IdempotencyKey = None,
) -> Accepted:
    """Refund all (no amount) or part of a ticket, never more than is left to refund: issued by
    the venue (``venue_admin`` or ``admin``). A buyer asks with ``POST .../refund-requests``.
    A full refund, or ``void_ticket``, voids the ticket: its NFT is frozen or burned."""
    return await ticket_refunds.refund(ctx, principal, purchase_id, body, idempotency_key)


# --- refund requests: the buyer asks, the venue decides --------------------------------------


@router.post(
    "/{purchase_id}/refund-requests",
    status_code=201,
    response_model=RefundRequestView,
    responses=error_responses(401, 404, 422),
)
async def ask_for_refund(
    purchase_id: str, body: RefundRequestBody, principal: CurrentUser, ctx: ContextDep
) -> RefundRequestView:
    """The buyer asks the venue for a refund; the venue approves (the refund starts) or
    declines it."""
    return await ticket_refund_requests.ask_for_refund(ctx, principal, purchase_id, body)


@router.get(
    "/refund-requests",
    response_model=list[RefundRequestView],
    responses=error_responses(401, 422),
)
async def list_refund_requests(
    principal: CurrentUser,
    ctx: ContextDep,
    status: Annotated[str | None, Query(pattern=r"^(pending|approved|declined)$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[RefundRequestView]:
    """The venue sees its tenant's requests; a buyer sees their own. Oldest first."""
    return await ticket_refund_requests.list_refund_requests(
        ctx, principal, status=status, limit=limit, offset=offset
    )


@router.post(
    "/refund-requests/{request_id}/approve",
    status_code=202,
    response_model=Accepted,
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
async def approve_refund_request(
    request_id: str,
    principal: CurrentUser,
    ctx: ContextDep,
    body: DecisionBody | None = None,
) -> Accepted:
    """Approve a buyer's request: the refund it asked for starts (venue staff)."""
    return await ticket_refund_requests.approve_refund_request(ctx, principal, request_id, body)


@router.post(
    "/refund-requests/{request_id}/decline",
    response_model=RefundRequestView,
    responses=error_responses(401, 403, 404, 409, 422),
)
async def decline_refund_request(
    request_id: str,
    principal: CurrentUser,
    ctx: ContextDep,
    body: DecisionBody | None = None,
) -> RefundRequestView:
    """Decline a buyer's request, with a reason they can read (venue staff)."""
    return await ticket_refund_requests.decline_refund_request(ctx, principal, request_id, body)


@router.post(
    "/{purchase_id}/transfer",
    status_code=202,
    response_model=Accepted,
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
async def transfer(
    purchase_id: str,
    body: TransferBody,
    principal: CurrentUser,
    ctx: ContextDep,
    idempotency_key: IdempotencyKey = None,
) -> Accepted:
    """Move the NFT ticket to another wallet (secondary market): by its buyer while it is still
    in the wallet it was bought with (checked on chain by the workflow), or by the venue from
    whoever holds it."""
    return await ticket_transfers.transfer(ctx, principal, purchase_id, body, idempotency_key)
