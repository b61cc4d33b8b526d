"""On-chain USDC deposit intents: an address of its own, an amount, an expiry.

HTTP only: the operations are :mod:`operations.deposit_intents`."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import AdminUser, ContextDep, CurrentUser
from api.errors import error_responses
from operations import deposit_intents
from operations.deposit_intents_models import CreateIntent, CreditLate, IntentView, LateCreditView

router = APIRouter(prefix="/api/v1/deposit/intent", tags=["onchain-deposits"])


@router.post(
    "/create", status_code=201, response_model=IntentView, responses=error_responses(401, 422, 503)
)
async def create_intent(body: CreateIntent, principal: CurrentUser, ctx: ContextDep) -> IntentView:
    """A deposit address of the caller's own for ``amount`` USDC, watched until it expires."""
    return await deposit_intents.start(ctx, principal, body)


@router.get("/{intent_id}", response_model=IntentView, responses=error_responses(401, 404))
async def get_intent(intent_id: str, principal: CurrentUser, ctx: ContextDep) -> IntentView:
    return await deposit_intents.get(ctx, principal, intent_id)


@router.post(
    "/{intent_id}/credit-late",
    status_code=202,
    response_model=LateCreditView,
    responses={
        200: {"model": LateCreditView, "description": "already credited: nothing changed"},
        **error_responses(401, 403, 404, 409, 422, 503),
    },
)
async def credit_late_transfer(
    intent_id: str,
    body: CreditLate,
    principal: AdminUser,
    ctx: ContextDep,
    response: Response,
) -> LateCreditView:
    """Credit a transfer that arrived after the intent closed (``late``) or whose credit was
    abandoned, named by tx hash and log index: 202 and a job that checks it on chain and credits
    it once; 200 ``already_credited`` when it was, and nothing changes. Tenant ``admin`` only."""
    view = await deposit_intents.credit_late(
        ctx, principal, intent_id, body.tx_hash, body.log_index
    )
    if view.status == "already_credited":
        response.status_code = 200
    return view
