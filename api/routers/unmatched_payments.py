"""Unmatched M-Pesa payments: list them, resolve one (credit it to a deposit, or mark it
refunded). HTTP only: the operations are :mod:`operations.unmatched_payments`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import ContextDep, OperatorUser
from api.errors import error_responses
from operations import unmatched_payments
from operations.unmatched_payments import (
    UUID_PATTERN,
    ResolveUnmatched,
    Status,
    UnmatchedPaymentList,
    UnmatchedPaymentView,
)

router = APIRouter(prefix="/api/v1/deposit/unmatched-payments", tags=["mpesa-deposits"])


@router.get("", response_model=UnmatchedPaymentList, responses=error_responses(401, 403, 422))
async def list_unmatched(
    principal: OperatorUser,
    ctx: ContextDep,
    status: Annotated[list[Status] | None, Query(description="default: open")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> UnmatchedPaymentList:
    """Unmatched payments of the caller's tenant (every tenant's and the unknown ones for a
    platform_admin), newest first."""
    return await unmatched_payments.list_payments(ctx, principal, status, limit)


@router.post(
    "/{payment_id}/resolve",
    response_model=UnmatchedPaymentView,
    responses=error_responses(400, 401, 403, 404, 409, 422),
)
async def resolve_unmatched(
    payment_id: Annotated[str, Path(pattern=UUID_PATTERN)],
    body: ResolveUnmatched,
    principal: OperatorUser,
    ctx: ContextDep,
) -> UnmatchedPaymentView:
    """Credit an open payment to a deposit (through the deposit's ledger path, once; 409 when
    the deposit is credited already, still open, or of another amount or phone), or mark it
    refunded. 409 also when the payment is not open. Nothing changes on a refusal."""
    return await unmatched_payments.resolve(ctx, principal, payment_id, body)
