"""Jobs: any Settle workflow execution, by workflow id. Find them across kinds, read one with its
timeline, retry it when parked, cancel it, terminate or abandon it (``/api/v1/jobs``).

Who may do what (a job of another tenant is always :class:`~domain.errors.NotFound`, and never
listed):

- list and read: the job's own user; ``venue_admin`` and ``admin`` for every job of their tenant;
  ``platform_admin`` for every tenant's. The input and result (personal data) only for ``admin``
  and ``platform_admin``;
- retry and cancel: the job's own user, or an ``admin`` of its tenant (a ``venue_admin`` may read
  another user's job but is :class:`~domain.errors.Forbidden` to change it);
- terminate and abandon: an ``admin`` of its tenant (the caller checks the role; these act in the
  admin's own tenant). An operator's decision stands: a job that was terminated or abandoned
  (here, in the Web UI or with the CLI) is retried only by an ``admin``.
"""

from __future__ import annotations

import uuid
from datetime import UTC

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
from api.jobs_lookup import (
    JobRef,
    api_identity,
    describe_job,
    failure_message,
    operator_decision,
    raise_if_unreachable,
    refuse_overriding,
    signal_retry,
    status_error,
)
from domain.errors import Conflict, Forbidden
from operations.context import Context
from operations.jobs_models import (
    JobAccepted,
    JobList,
    JobSummary,
    JobView,
    PendingActivity,
    RetryingStep,
)
from operations.jobs_payloads import input_and_result
from operations.jobs_search import JobFilters, find_jobs
from operations.jobs_timeline import Timeline, timeline
from operations.links import web_ui_url
from runtime.logging import get_logger
from runtime.stuck_steps import failure_text, stuck_steps

log = get_logger("api.jobs")

#: most jobs one page of ``GET /api/v1/jobs`` holds
MAX_PAGE = 200
#: closed runs that a retry resets (a completed or cancelled job ended on purpose)
RESETTABLE = frozenset({"failed", "terminated", "timed_out"})


def job_url(job_id: str) -> str:
    return f"/api/v1/jobs/{job_id}"


def accepted(job_id: str, action: str) -> JobAccepted:
    return JobAccepted(id=job_id, action=action, status_url=job_url(job_id))


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


def sees_payloads(principal: Principal) -> bool:
    """Inputs and results carry personal data: a tenant's admin and the platform's see them."""
    return principal.is_admin or principal.is_platform_admin


async def list_jobs(
    ctx: Context, principal: Principal, filters: JobFilters, limit: int, cursor: str | None
) -> JobList:
    """One page of the jobs the caller may see matching ``filters``, newest first. A cursor this
    API did not hand out for the same listing, or ``since`` not before ``until``, is
    :class:`~domain.errors.InvalidInput`."""
    page = await find_jobs(ctx.temporal, ctx.settings, principal, filters, limit, cursor)
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
                job_url=job_url(j.id),
            )
            for j in page.jobs
        ],
        next_cursor=page.next_cursor,
    )


async def get_job(ctx: Context, principal: Principal, job_id: str) -> JobView:
    """One job: search attributes, Temporal's status, pending activities, the error, and for
    ``admin``/``platform_admin`` its input and result."""
    temporal = ctx.temporal
    job, description = await describe_job(temporal, job_id, principal)
    retrying = (
        await _retrying(temporal, description, ctx.settings.step_alert_after_attempts)
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
        web_ui_url=web_ui_url(ctx.settings, job.id),
        timeline_url=f"/api/v1/jobs/{job.id}/timeline",
    )


async def get_timeline(ctx: Context, principal: Principal, job_id: str) -> Timeline:
    """The job's history and the lines its activities wrote, newest last."""
    job, _ = await describe_job(ctx.temporal, job_id, principal)
    return await timeline(ctx.temporal, ctx.reads, job)


async def retry_job(ctx: Context, principal: Principal, job_id: str) -> JobAccepted:
    """A parked job gets the ``retry`` signal; a failed, terminated or timed-out one is reset to
    its last good point. A job an operator terminated or abandoned is retried only by an admin."""
    temporal = ctx.temporal
    job, _ = await describe_job(temporal, job_id, principal)
    may_change(job, principal)
    refuse_overriding(await operator_decision(temporal, job), principal)
    if job.temporal_status in RESETTABLE:
        run_id = await reset_to_last_good_point(temporal, job.id, job.run_id, principal.subject)
        log.info("job reset", job_id=job.id, run_id=run_id, by=principal.subject)
        return accepted(job.id, "reset")
    if not job.parked:
        raise Conflict(
            f"job is not waiting for a retry (status {job.status}); only a needs_attention, "
            "failed, terminated or timed-out job can be retried",
            field="job_id",
        )
    await signal_retry(temporal, job.id)
    log.info("job retry requested", job_id=job.id, by=principal.subject, tenant=principal.tenant)
    return accepted(job.id, "retry")


async def cancel_job(ctx: Context, principal: Principal, job_id: str) -> JobAccepted:
    """Request cancellation; the workflow decides what that means."""
    temporal = ctx.temporal
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
    return accepted(job.id, "cancel")


async def terminate_job(ctx: Context, admin: Principal, job_id: str, reason: str) -> JobAccepted:
    """Terminate a running job of the admin's own tenant at once; ``reason`` and the admin are
    kept in its history."""
    temporal = ctx.temporal
    job, _ = await describe_job(temporal, job_id, admin.in_own_tenant())
    if not job.running:
        raise Conflict(f"job is closed (status {job.status}); nothing to terminate", field="job_id")
    try:
        await temporal.workflow_service.terminate_workflow_execution(
            TerminateWorkflowExecutionRequest(
                namespace=temporal.namespace,
                workflow_execution=WorkflowExecution(workflow_id=job.id, run_id=job.run_id or ""),
                reason=reason,
                identity=api_identity(admin),
            )
        )
    except (RPCError, RuntimeError) as exc:
        if isinstance(exc, RPCError) and exc.status == RPCStatusCode.NOT_FOUND:
            raise Conflict("the job closed before it could be terminated", field="job_id") from exc
        raise_if_unreachable(exc)
        raise
    log.info("job terminated", job_id=job.id, by=admin.subject, tenant=admin.tenant)
    return accepted(job.id, "terminate")


async def abandon_job(ctx: Context, admin: Principal, job_id: str, reason: str) -> JobAccepted:
    """Give up on a parked job of the admin's own tenant: the ``abandon`` signal with
    ``reason``."""
    temporal = ctx.temporal
    job, _ = await describe_job(temporal, job_id, admin.in_own_tenant())
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
                input=Payloads(payloads=await temporal.data_converter.encode([reason])),
                identity=api_identity(admin),
                request_id=str(uuid.uuid4()),
            )
        )
    except (RPCError, RuntimeError) as exc:
        if isinstance(exc, RPCError) and exc.status == RPCStatusCode.NOT_FOUND:
            raise Conflict("the job closed before it could be abandoned", field="job_id") from exc
        raise_if_unreachable(exc)
        raise
    log.info("job abandoned", job_id=job.id, by=admin.subject, tenant=admin.tenant)
    return accepted(job.id, "abandon")


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
