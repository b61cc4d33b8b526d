"""Dead letters over HTTP: parked jobs (``SettleStatus="needs_attention"``) of the caller's tenant,
and jobs with a step still failing (``SettleStatus="retrying"``), for admins. The operations are
:mod:`operations.dead_letters`; this router translates HTTP to calls and answers.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from api.deps import AdminUser, ContextDep, OperatorUser
from api.errors import error_responses
from api.job_params import JobId
from api.jobs_lookup import JOB_ID_PATTERN
from domain.search import OperationKind
from operations import dead_letters
from operations.dead_letters import MAX_BULK, BulkRetryResult, DeadLetter, ErrorStats
from operations.jobs_models import JobAccepted
from operations.unmatched_payments import UnmatchedPaymentView, open_items

router = APIRouter(prefix="/api/v1/dead-letter", tags=["dead-letter"])

KindQuery = Annotated[
    OperationKind | None, Query(description="only jobs of this kind (SettleKind)")
]


class DeadLetterList(BaseModel):
    items: list[DeadLetter]
    count: int
    #: M-Pesa payments no deposit owns (open), which an admin resolves like a parked job:
    #: ``POST /api/v1/deposit/unmatched-payments/{id}/resolve``
    unmatched_payments: list[UnmatchedPaymentView] = []


class BulkRetry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[Annotated[str, Field(pattern=JOB_ID_PATTERN)]] | None = Field(
        default=None, min_length=1, max_length=MAX_BULK
    )
    kind: OperationKind | None = Field(
        default=None, description="retry every parked job of this kind (up to 1000)"
    )


@router.get("", response_model=DeadLetterList, responses=error_responses(401, 403, 422, 503))
async def list_dead_letters(
    principal: OperatorUser,
    ctx: ContextDep,
    kind: KindQuery = None,
    error_type: Annotated[
        str | None,
        Query(
            pattern=r"^[A-Za-z0-9_.]{1,80}$",
            description="only errors of this type, e.g. IdempotencyConflict",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_BULK)] = 100,
) -> DeadLetterList:
    """Parked jobs of the caller's tenant, and jobs with a step still failing (``retrying``),
    newest first. Same as ``temporal workflow list --query 'SettleTenant="t1" AND
    (SettleStatus="needs_attention" OR SettleStatus="retrying")'``. Open unmatched M-Pesa
    payments are listed beside them (``unmatched_payments``)."""
    items = await dead_letters.list_dead_letters(ctx, principal, kind, error_type, limit)
    unmatched = []
    if dead_letters.lists_unmatched_payments(kind, error_type):
        unmatched = await open_items(ctx.reads, principal, limit)
    return DeadLetterList(items=items, count=len(items), unmatched_payments=unmatched)


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "one JSON object (a dead letter, as in the list) per line",
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
        },
        **error_responses(401, 403, 422, 503),
    },
)
async def export_dead_letters(
    principal: OperatorUser, ctx: ContextDep, kind: KindQuery = None
) -> StreamingResponse:
    """Every parked job of the tenant (up to 10,000) as JSON lines, one dead letter per line."""
    return StreamingResponse(
        await dead_letters.export_lines(ctx, principal, kind),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="dead-letters.ndjson"'},
    )


@router.get(
    "/stats/by-error", response_model=ErrorStats, responses=error_responses(401, 403, 422, 503)
)
async def stats_by_error(
    principal: OperatorUser, ctx: ContextDep, kind: KindQuery = None
) -> ErrorStats:
    """Parked jobs counted by error type and failed step (up to 10,000 jobs read)."""
    return await dead_letters.stats_by_error(ctx, principal, kind)


@router.post(
    "/retry", response_model=BulkRetryResult, responses=error_responses(401, 403, 422, 503)
)
async def retry_many(body: BulkRetry, principal: AdminUser, ctx: ContextDep) -> BulkRetryResult:
    """Retry up to 1,000 parked jobs: ``{"ids": [...]}``, or ``{"kind": "mpesa_deposit"}`` for every
    parked job of a kind. Each id gets its outcome; ids that are not parked are left alone."""
    return await dead_letters.retry_many(ctx, principal, body.ids, body.kind)


@router.post(
    "/{job_id}/retry",
    status_code=202,
    response_model=JobAccepted,
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
async def retry_dead_letter(job_id: JobId, principal: AdminUser, ctx: ContextDep) -> JobAccepted:
    """Retry one parked job of the tenant; 409 when it is not parked."""
    return await dead_letters.retry_dead_letter(ctx, principal, job_id)
