"""Jobs over HTTP: any Settle workflow execution, by workflow id. Find them across kinds, read one
with its timeline, retry it when parked, cancel it, terminate or abandon it. The operations are
:mod:`operations.jobs`; this router translates HTTP to calls and answers.

Who may do what (a job of another tenant is always 404, and never listed):

- list and read: the job's own user; ``venue_admin`` and ``admin`` for every job of their tenant;
  ``platform_admin`` for every tenant's. The input and result (personal data) only for ``admin``
  and ``platform_admin``;
- retry and cancel: the job's own user, or an ``admin`` of its tenant (a ``venue_admin`` may read
  another user's job but gets 403 when changing it);
- terminate and abandon: an ``admin`` of its tenant. An operator's decision stands: a job that was
  terminated or abandoned (here, in the Web UI or with the CLI) is retried only by an ``admin``;
  its reason and who decided show in ``GET /api/v1/jobs/{id}``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from api.deps import AdminUser, ContextDep, CurrentUser
from api.errors import error_responses
from api.job_params import JobId
from api.timestamps import UtcDateTime
from domain.search import OperationKind, OperationStatus
from operations import jobs
from operations.jobs import MAX_PAGE
from operations.jobs_models import JobAccepted, JobList, JobView
from operations.jobs_search import FILTER_VALUE, JobFilters
from operations.jobs_timeline import Timeline

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500, description="kept in the job's history")


@router.get("", response_model=JobList, responses=error_responses(401, 422, 503))
async def list_jobs(
    principal: CurrentUser,
    ctx: ContextDep,
    kind: Annotated[OperationKind | None, Query(description="SettleKind")] = None,
    status: Annotated[OperationStatus | None, Query(description="SettleStatus")] = None,
    user: Annotated[
        str | None, Query(pattern=FILTER_VALUE, description="the token subject who started it")
    ] = None,
    tenant: Annotated[
        str | None,
        Query(pattern=FILTER_VALUE, description="platform_admin: one tenant's jobs"),
    ] = None,
    ref: Annotated[
        str | None,
        Query(
            pattern=FILTER_VALUE,
            description="any id the job learned (SettleRefs): CheckoutRequestID, M-Pesa receipt, "
            "transaction hash, PaymentIntent, refund id, mint, credential id, content hash",
        ),
    ] = None,
    since: Annotated[UtcDateTime | None, Query(description="started at or after")] = None,
    until: Annotated[UtcDateTime | None, Query(description="started before")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[
        str | None,
        Query(pattern=r"^[A-Za-z0-9_=-]{1,4096}$", description="next_cursor of the previous page"),
    ] = None,
) -> JobList:
    """Jobs of every kind the caller may see (a ``user`` their own, ``venue_admin``/``admin``
    their tenant's, ``platform_admin`` every tenant's), newest first, one page at a time. Same as
    ``temporal workflow list --query 'SettleTenant="t1" AND SettleRefs="<ref>"'``."""
    filters = JobFilters(kind, status, user, tenant, ref, since, until)
    return await jobs.list_jobs(ctx, principal, filters, limit, cursor)


@router.get("/{job_id}", response_model=JobView, responses=error_responses(401, 404, 422, 503))
async def get_job(job_id: JobId, principal: CurrentUser, ctx: ContextDep) -> JobView:
    """One job: search attributes, Temporal's status, pending activities (attempt, last failure,
    next attempt), the error, and for ``admin``/``platform_admin`` its input and result."""
    return await jobs.get_job(ctx, principal, job_id)


@router.get(
    "/{job_id}/timeline", response_model=Timeline, responses=error_responses(401, 404, 422, 503)
)
async def get_timeline(job_id: JobId, principal: CurrentUser, ctx: ContextDep) -> Timeline:
    """What happened, newest last: activities scheduled and ended (attempt, duration, failure),
    timers, signals and operator actions (who), status changes, the run's end, and the lines the
    activities wrote. Same history as ``temporal workflow show --workflow-id <id>``."""
    return await jobs.get_timeline(ctx, principal, job_id)


@router.post(
    "/{job_id}/retry",
    status_code=202,
    response_model=JobAccepted,
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
async def retry_job(job_id: JobId, principal: CurrentUser, ctx: ContextDep) -> JobAccepted:
    """Send ``retry`` to a parked job (``SettleStatus=needs_attention``): its parked step runs
    again. Same as ``temporal workflow signal --workflow-id <id> --name retry``.

    A failed, terminated or timed-out job is reset to its last good point (the last completed
    workflow task before it ended): a new run of the same workflow id replays the history up to
    there and carries on, re-running the step that failed. Same as ``temporal workflow reset
    --workflow-id <id> --type LastWorkflowTask``.

    A job an operator terminated or abandoned is retried only by an ``admin`` (403 for its owner:
    the decision stands)."""
    return await jobs.retry_job(ctx, principal, job_id)


@router.delete(
    "/{job_id}",
    status_code=202,
    response_model=JobAccepted,
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
async def cancel_job(job_id: JobId, principal: CurrentUser, ctx: ContextDep) -> JobAccepted:
    """Request cancellation. The workflow decides what that means: a deposit whose customer has
    already been prompted refuses it and runs to its end; compensations run where they exist.
    Same as ``temporal workflow cancel --workflow-id <id>``."""
    return await jobs.cancel_job(ctx, principal, job_id)


@router.post(
    "/{job_id}/terminate",
    status_code=202,
    response_model=JobAccepted,
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
async def terminate_job(
    job_id: JobId, body: Decision, principal: AdminUser, ctx: ContextDep
) -> JobAccepted:
    """Terminate a running job at once (``admin``): no compensation runs, so prefer
    ``DELETE /api/v1/jobs/{id}``. The reason and the admin are kept in its history; its owner
    cannot retry it. Same as ``temporal workflow terminate --workflow-id <id> --reason …``."""
    return await jobs.terminate_job(ctx, principal, job_id, body.reason)


@router.post(
    "/{job_id}/abandon",
    status_code=202,
    response_model=JobAccepted,
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
async def abandon_job(
    job_id: JobId, body: Decision, principal: AdminUser, ctx: ContextDep
) -> JobAccepted:
    """Give up on a parked job (``admin``): it gets the ``abandon`` signal with the reason and
    ends ``abandoned``; its owner cannot retry it. Same as
    ``temporal workflow signal --workflow-id <id> --name abandon --input '"<reason>"'``."""
    return await jobs.abandon_job(ctx, principal, job_id, body.reason)
