"""Jobs: any Settle workflow execution, by workflow id. Find them across kinds, read one with its
timeline, retry it when parked, cancel it, terminate or abandon it.

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

import uuid
from datetime import UTC
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from temporalio.api.common.v1 import Payloads, WorkflowExecution
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.api.workflowservice.v1 import (
    ResetWorkflowExecutionRequest,
    SignalWorkflowExecutionRequest,
    TerminateWorkflowExecutionRequest,
)
from temporalio.client import Client, WorkflowExecutionDescription
from temporalio.service import RPCError, RPCStatusCode

from api.auth import Principal
from api.deps import AdminUser, CurrentUser, ReadSessionsDep, SettingsDep, TemporalDep
from api.errors import error_responses
from api.jobs_lookup import (
    JOB_ID_PATTERN,
    JobRef,
    OperatorDecision,
    api_identity,
    describe_job,
    failure_message,
    operator_decision,
    raise_if_unreachable,
    refuse_overriding,
    signal_retry,
    status_error,
)
from api.jobs_payloads import input_and_result
from api.jobs_search import FILTER_VALUE, JobFilters, find_jobs
from api.jobs_timeline import Timeline, timeline
from api.timestamps import UtcDateTime
from domain.errors import Conflict, Forbidden
from domain.search import OperationKind, OperationStatus
from operations.links import web_ui_url
from runtime.logging import get_logger
from runtime.stuck_steps import failure_text, stuck_steps

log = get_logger("api.jobs")
router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])

#: most jobs one page of ``GET /api/v1/jobs`` holds
MAX_PAGE = 200

JobId = Annotated[
    str,
    Path(
        pattern=JOB_ID_PATTERN,
        description="the workflow id, e.g. mpesa-deposit-<deposit id>",
        examples=["mpesa-deposit-0b6f5d2e-5a0c-4f43-9a53-2f4b8f0d6c11"],
    ),
]


class PendingActivity(BaseModel):
    activity_id: str
    activity_type: str
    state: str
    attempt: int
    maximum_attempts: int
    #: the last attempt's failure, with its causes
    last_failure: str | None = None
    #: when the next attempt is due (an activity backing off between attempts)
    next_attempt_at: UtcDateTime | None = None


class RetryingStep(BaseModel):
    """A step still failing after ``STEP_ALERT_AFTER_ATTEMPTS`` attempts, and retried."""

    #: the activity, e.g. ``deposits.set_outcome``
    step: str
    activity_id: str
    #: Temporal's attempt number of the attempt running or waiting to run
    attempt: int
    failed_attempts: int
    #: the last attempt's error, whole (as trimmed to fit Temporal's failure size limit)
    last_error: str | None


class JobView(BaseModel):
    id: str
    run_id: str | None
    workflow_type: str
    kind: str | None
    tenant: str | None
    user: str | None
    #: SettleStatus; Temporal's status for a run that closed without saying how it ended
    status: str | None
    temporal_status: str | None
    started_at: UtcDateTime | None
    closed_at: UtcDateTime | None
    #: activities in flight or backing off, with their attempt counts
    pending_activities: list[PendingActivity]
    #: a step failing again and again (``SettleStatus=retrying``), while it lasts
    retrying_step: RetryingStep | None = None
    #: a failed run's failure, or the error in a running workflow's ``status`` query, or the last
    #: error of a step still failing
    error: str | None
    #: set when an operator terminated or abandoned the job: what, why, who, when
    operator_decision: OperatorDecision | None = None
    #: the workflow's input and (once completed) result, decoded and redacted: ``admin`` and
    #: ``platform_admin`` only (None for anyone else)
    input: Any = None
    result: Any = None
    web_ui_url: str
    timeline_url: str


class JobSummary(BaseModel):
    id: str
    run_id: str | None
    workflow_type: str
    kind: str | None
    tenant: str | None
    user: str | None
    status: str | None
    temporal_status: str | None
    started_at: UtcDateTime | None
    closed_at: UtcDateTime | None
    job_url: str


class JobList(BaseModel):
    items: list[JobSummary]
    #: pass as ``cursor`` for the next page; None on the last page
    next_cursor: str | None


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500, description="kept in the job's history")


class JobAccepted(BaseModel):
    id: str
    action: str
    status_url: str


async def _pending(
    client: Client, description: WorkflowExecutionDescription
) -> list[PendingActivity]:
    return [
        PendingActivity(
            activity_id=a.activity_id,
            activity_type=a.activity_type.name,
            state=_activity_state(a.state),
            attempt=a.attempt,
            maximum_attempts=a.maximum_attempts,
            last_failure=(
                await failure_text(client, a.last_failure) or None
                if a.HasField("last_failure")
                else None
            ),
            next_attempt_at=(
                a.next_attempt_schedule_time.ToDatetime(tzinfo=UTC)
                if a.HasField("next_attempt_schedule_time")
                else None
            ),
        )
        for a in description.raw_description.pending_activities
    ]


async def _retrying(
    client: Client, description: WorkflowExecutionDescription, alert_after: int
) -> RetryingStep | None:
    """The step (pending activity) failing longest, once it failed ``alert_after`` times."""
    steps = await stuck_steps(client, description, alert_after)
    if not steps:
        return None
    worst = max(steps, key=lambda s: s.attempt)
    return RetryingStep(
        step=worst.activity_type,
        activity_id=worst.activity_id,
        attempt=worst.attempt,
        failed_attempts=worst.attempt - 1,
        last_error=worst.last_error,
    )


def _activity_state(value: PendingActivityState.ValueType) -> str:
    return PendingActivityState.Name(value).removeprefix("PENDING_ACTIVITY_STATE_").lower()


def may_change(job: JobRef, principal: Principal) -> None:
    """Retry and cancel: the job's own user, or an admin of its tenant."""
    if not (job.owned_by(principal) or job.administered_by(principal)):
        raise Forbidden("admin role of the job's tenant required to change another user's job")


async def _error(client: Client, job: JobRef) -> str | None:
    if job.running:
        return await status_error(client, job.id)
    if job.temporal_status == "failed":
        return await failure_message(client, job.id, job.run_id)
    return None


@router.get("", response_model=JobList, responses=error_responses(401, 422, 503))
async def list_jobs(
    principal: CurrentUser,
    settings: SettingsDep,
    temporal: TemporalDep,
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
    page = await find_jobs(temporal, settings, principal, filters, limit, cursor)
    return JobList(
        items=[
            JobSummary(
                id=j.id,
                run_id=j.run_id,
                workflow_type=j.workflow_type,
                kind=j.kind,
                tenant=j.tenant,
                user=j.user,
                status=j.status,
                temporal_status=j.temporal_status,
                started_at=j.started_at,
                closed_at=j.closed_at,
                job_url=f"/api/v1/jobs/{j.id}",
            )
            for j in page.jobs
        ],
        next_cursor=page.next_cursor,
    )


def sees_payloads(principal: Principal) -> bool:
    """Inputs and results carry personal data: a tenant's admin and the platform's see them."""
    return principal.is_admin or principal.is_platform_admin


@router.get("/{job_id}", response_model=JobView, responses=error_responses(401, 404, 422, 503))
async def get_job(
    job_id: JobId, principal: CurrentUser, settings: SettingsDep, temporal: TemporalDep
) -> JobView:
    """One job: search attributes, Temporal's status, pending activities (attempt, last failure,
    next attempt), the error, and for ``admin``/``platform_admin`` its input and result."""
    job, description = await describe_job(temporal, job_id, principal)
    retrying = (
        await _retrying(temporal, description, settings.step_alert_after_attempts)
        if job.running
        else None
    )
    error = await _error(temporal, job)
    if error is None and retrying is not None:
        error = f"{retrying.step} still failing (attempt {retrying.attempt}): {retrying.last_error}"
    payloads = await input_and_result(temporal, job) if sees_payloads(principal) else None
    return JobView(
        id=job.id,
        run_id=job.run_id,
        workflow_type=job.workflow_type,
        kind=job.kind,
        tenant=job.tenant,
        user=job.user,
        status=job.status,
        temporal_status=job.temporal_status,
        started_at=job.started_at,
        closed_at=job.closed_at,
        pending_activities=await _pending(temporal, description),
        retrying_step=retrying,
        error=error,
        operator_decision=await operator_decision(temporal, job),
        input=payloads.input if payloads else None,
        result=payloads.result if payloads else None,
        web_ui_url=web_ui_url(settings, job.id),
        timeline_url=f"/api/v1/jobs/{job.id}/timeline",
    )


@router.get(
    "/{job_id}/timeline", response_model=Timeline, responses=error_responses(401, 404, 422, 503)
)
async def get_timeline(
    job_id: JobId, principal: CurrentUser, temporal: TemporalDep, reads: ReadSessionsDep
) -> Timeline:
    """What happened, newest last: activities scheduled and ended (attempt, duration, failure),
    timers, signals and operator actions (who), status changes, the run's end, and the lines the
    activities wrote. Same history as ``temporal workflow show --workflow-id <id>``."""
    job, _ = await describe_job(temporal, job_id, principal)
    return await timeline(temporal, reads, job)


@router.post(
    "/{job_id}/retry",
    status_code=202,
    response_model=JobAccepted,
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
async def retry_job(job_id: JobId, principal: CurrentUser, temporal: TemporalDep) -> JobAccepted:
    """Send ``retry`` to a parked job (``SettleStatus=needs_attention``): its parked step runs
    again. Same as ``temporal workflow signal --workflow-id <id> --name retry``.

    A failed, terminated or timed-out job is reset to its last good point (the last completed
    workflow task before it ended): a new run of the same workflow id replays the history up to
    there and carries on, re-running the step that failed. Same as ``temporal workflow reset
    --workflow-id <id> --type LastWorkflowTask``.

    A job an operator terminated or abandoned is retried only by an ``admin`` (403 for its owner:
    the decision stands)."""
    job, _ = await describe_job(temporal, job_id, principal)
    may_change(job, principal)
    refuse_overriding(await operator_decision(temporal, job), principal)
    if job.temporal_status in RESETTABLE:
        run_id = await reset_to_last_good_point(temporal, job.id, job.run_id, principal.subject)
        log.info("job reset", job_id=job.id, run_id=run_id, by=principal.subject)
        return JobAccepted(id=job.id, action="reset", status_url=f"/api/v1/jobs/{job.id}")
    if not job.parked:
        raise Conflict(
            f"job is not waiting for a retry (status {job.status}); only a needs_attention, "
            "failed, terminated or timed-out job can be retried",
            field="job_id",
        )
    await signal_retry(temporal, job.id)
    log.info("job retry requested", job_id=job.id, by=principal.subject, tenant=principal.tenant)
    return JobAccepted(id=job.id, action="retry", status_url=f"/api/v1/jobs/{job.id}")


@router.delete(
    "/{job_id}",
    status_code=202,
    response_model=JobAccepted,
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
async def cancel_job(job_id: JobId, principal: CurrentUser, temporal: TemporalDep) -> JobAccepted:
    """Request cancellation. The workflow decides what that means: a deposit whose customer has
    already been prompted refuses it and runs to its end; compensations run where they exist.
    Same as ``temporal workflow cancel --workflow-id <id>``."""
    job, _ = await describe_job(temporal, job_id, principal)
    may_change(job, principal)
    if not job.running:
        raise Conflict(f"job is closed (status {job.status}); nothing to cancel", field="job_id")
    try:
        handle = temporal.get_workflow_handle(job.id)
        await handle.cancel(reason=f"requested by {principal.subject}")
    except (RPCError, RuntimeError) as exc:
        if isinstance(exc, RPCError) and exc.status == RPCStatusCode.NOT_FOUND:
            raise Conflict("the job closed before it could be cancelled", field="job_id") from exc
        raise_if_unreachable(exc)
        raise
    log.info("job cancel requested", job_id=job.id, by=principal.subject, tenant=principal.tenant)
    return JobAccepted(id=job.id, action="cancel", status_url=f"/api/v1/jobs/{job.id}")


@router.post(
    "/{job_id}/terminate",
    status_code=202,
    response_model=JobAccepted,
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
async def terminate_job(
    job_id: JobId, body: Decision, principal: AdminUser, temporal: TemporalDep
) -> JobAccepted:
    """Terminate a running job at once (``admin``): no compensation runs, so prefer
    ``DELETE /api/v1/jobs/{id}``. The reason and the admin are kept in its history; its owner
    cannot retry it. Same as ``temporal workflow terminate --workflow-id <id> --reason …``."""
    job, _ = await describe_job(temporal, job_id, principal.in_own_tenant())
    if not job.running:
        raise Conflict(f"job is closed (status {job.status}); nothing to terminate", field="job_id")
    try:
        await temporal.workflow_service.terminate_workflow_execution(
            TerminateWorkflowExecutionRequest(
                namespace=temporal.namespace,
                workflow_execution=WorkflowExecution(workflow_id=job.id, run_id=job.run_id or ""),
                reason=body.reason,
                identity=api_identity(principal),
            )
        )
    except (RPCError, RuntimeError) as exc:
        if isinstance(exc, RPCError) and exc.status == RPCStatusCode.NOT_FOUND:
            raise Conflict("the job closed before it could be terminated", field="job_id") from exc
        raise_if_unreachable(exc)
        raise
    log.info("job terminated", job_id=job.id, by=principal.subject, tenant=principal.tenant)
    return JobAccepted(id=job.id, action="terminate", status_url=f"/api/v1/jobs/{job.id}")


@router.post(
    "/{job_id}/abandon",
    status_code=202,
    response_model=JobAccepted,
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
async def abandon_job(
    job_id: JobId, body: Decision, principal: AdminUser, temporal: TemporalDep
) -> JobAccepted:
    """Give up on a parked job (``admin``): it gets the ``abandon`` signal with the reason and
    ends ``abandoned``; its owner cannot retry it. Same as
    ``temporal workflow signal --workflow-id <id> --name abandon --input '"<reason>"'``."""
    job, _ = await describe_job(temporal, job_id, principal.in_own_tenant())
    if not job.parked:
        raise Conflict(
            f"job is not parked (status {job.status}); only a needs_attention job is abandoned",
            field="job_id",
        )
    try:
        await temporal.workflow_service.signal_workflow_execution(
            SignalWorkflowExecutionRequest(
                namespace=temporal.namespace,
                workflow_execution=WorkflowExecution(workflow_id=job.id, run_id=job.run_id or ""),
                signal_name="abandon",
                input=Payloads(payloads=await temporal.data_converter.encode([body.reason])),
                identity=api_identity(principal),
                request_id=str(uuid.uuid4()),
            )
        )
    except (RPCError, RuntimeError) as exc:
        if isinstance(exc, RPCError) and exc.status == RPCStatusCode.NOT_FOUND:
            raise Conflict("the job closed before it could be abandoned", field="job_id") from exc
        raise_if_unreachable(exc)
        raise
    log.info("job abandoned", job_id=job.id, by=principal.subject, tenant=principal.tenant)
    return JobAccepted(id=job.id, action="abandon", status_url=f"/api/v1/jobs/{job.id}")


#: closed runs that a retry resets (a completed or cancelled job ended on purpose)
RESETTABLE = frozenset({"failed", "terminated", "timed_out"})


async def reset_to_last_good_point(
    temporal: Client, workflow_id: str, run_id: str | None, by: str
) -> str:
    """Reset the run to its last completed workflow task; the new run's id."""
    handle = temporal.get_workflow_handle(workflow_id, run_id=run_id)
    try:
        last_good: int | None = None
        async for event in handle.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                last_good = event.event_id
        if last_good is None:
            raise Conflict("the job never completed a workflow task; nothing to reset to")
        response = await temporal.workflow_service.reset_workflow_execution(
            ResetWorkflowExecutionRequest(
                namespace=temporal.namespace,
                workflow_execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id or ""),
                reason=f"retried through the API by {by}",
                workflow_task_finish_event_id=last_good,
                request_id=str(uuid.uuid4()),
            )
        )
    except (RPCError, RuntimeError) as exc:
        raise_if_unreachable(exc)
        raise
    return str(response.run_id)
