"""Dead letters: parked jobs (``SettleStatus="needs_attention"``) of the caller's tenant, and jobs
with a step still failing after ``STEP_ALERT_AFTER_ATTEMPTS`` attempts (``SettleStatus="retrying"``:
listed with the step, its attempt and last error from ``describe``; they take no ``retry``,
Temporal is retrying them); admins (a ``platform_admin`` reads every tenant's, and retries none:
that is the tenant admin's call). Served as ``/api/v1/dead-letter``.

Lists come from Temporal visibility (eventually consistent: a job parked a second ago may not be
listed yet). The error of each parked job, and its type, come from the workflow's ``status`` query
(visibility has no error attribute): ``"credit failed: IdempotencyConflict: ..."`` gives
``step="credit failed"`` and ``error_type="IdempotencyConflict"``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Literal

from pydantic import BaseModel
from temporalio.client import Client

from api.auth import Principal
from api.jobs_lookup import (
    JobRef,
    bounded,
    dead_letter_query,
    describe_job,
    error_parts,
    list_jobs,
    parked_query,
    signal_retry,
    status_error,
)
from api.timestamps import UtcDateTime
from domain.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable
from domain.search import OperationKind, OperationStatus
from operations.context import Context
from operations.jobs_models import JobAccepted
from operations.links import web_ui_url
from runtime.logging import get_logger
from runtime.settings import Settings
from runtime.stuck_steps import stuck_steps

log = get_logger("api.dead_letter")

#: most parked jobs read by one export, stats or filtered listing
SCAN_LIMIT = 10_000
MAX_BULK = 1000


class DeadLetter(BaseModel):
    id: str
    run_id: str | None
    kind: str | None
    user: str | None
    status: str | None
    started_at: UtcDateTime | None
    #: the workflow's ``status`` query ``error`` (None if it did not answer in time)
    error: str | None
    error_type: str | None
    step: str | None
    #: a ``retrying`` job: the attempt of its failing step (the step is the activity's name)
    attempt: int | None = None
    web_ui_url: str


Outcome = Literal["retried", "not_parked", "not_found", "unavailable"]


class RetryResult(BaseModel):
    id: str
    outcome: Outcome
    message: str | None = None


class BulkRetryResult(BaseModel):
    requested: int
    retried: int
    results: list[RetryResult]


class ErrorGroup(BaseModel):
    error_type: str | None
    step: str | None
    count: int
    #: one job of the group, to look at
    example_id: str
    example_error: str | None


class ErrorStats(BaseModel):
    total: int
    groups: list[ErrorGroup]


def _item(settings: Settings, job: JobRef, error: str | None) -> DeadLetter:
    error_type, step = error_parts(error)
    return DeadLetter(
        id=job.id,
        run_id=job.run_id,
        kind=job.kind,
        user=job.user,
        status=job.status,
        started_at=job.started_at,
        error=error,
        error_type=error_type,
        step=step,
        web_ui_url=web_ui_url(settings, job.id),
    )


async def _describe_item(client: Client, settings: Settings, job: JobRef) -> DeadLetter:
    """A parked job's error from its ``status`` query; a ``retrying`` job's failing step, its
    attempt and last error from ``describe``."""
    if job.settle_status != OperationStatus.RETRYING.value:
        return _item(settings, job, await status_error(client, job.id))
    try:
        description = await client.get_workflow_handle(job.id, run_id=job.run_id).describe()
        steps = await stuck_steps(client, description, settings.step_alert_after_attempts)
    except Exception as exc:  # closed or unreachable meanwhile: listed without its error
        log.info("retrying job not described", job_id=job.id, error=str(exc))
        steps = []
    item = _item(settings, job, None)
    if steps:
        worst = max(steps, key=lambda s: s.attempt)
        item.step, item.attempt, item.error = worst.activity_type, worst.attempt, worst.last_error
        item.error_type, _ = error_parts(f"step: {worst.last_error}")
    return item


async def _with_errors(client: Client, settings: Settings, jobs: list[JobRef]) -> list[DeadLetter]:
    items: list[DeadLetter] = await bounded(jobs, lambda job: _describe_item(client, settings, job))
    return items


async def _parked(
    ctx: Context, principal: Principal, kind: OperationKind | None, limit: int
) -> list[DeadLetter]:
    jobs = await list_jobs(ctx.temporal, dead_letter_query(principal, kind), limit)
    return await _with_errors(ctx.temporal, ctx.settings, jobs)


async def list_dead_letters(
    ctx: Context,
    principal: Principal,
    kind: OperationKind | None = None,
    error_type: str | None = None,
    limit: int = 100,
) -> list[DeadLetter]:
    """Parked jobs of the caller's scope, and jobs with a step still failing (``retrying``),
    newest first; only those whose error is of ``error_type`` when it is given."""
    if error_type is None:
        return await _parked(ctx, principal, kind, limit)
    scanned = await _parked(ctx, principal, kind, SCAN_LIMIT)
    return [i for i in scanned if i.error_type == error_type][:limit]


def lists_unmatched_payments(kind: OperationKind | None, error_type: str | None) -> bool:
    """Whether a dead-letter listing shows the open unmatched M-Pesa payments beside the jobs:
    they have no error type, and belong to M-Pesa deposits."""
    return kind in (None, OperationKind.MPESA_DEPOSIT) and error_type is None


async def export_lines(
    ctx: Context, principal: Principal, kind: OperationKind | None = None
) -> AsyncIterator[str]:
    """Every parked job of the scope (up to 10,000), one dead letter as JSON per line. The jobs
    are listed before this returns (an unreachable Temporal raises here); their errors are read
    100 at a time as the lines are consumed."""
    jobs = await list_jobs(ctx.temporal, dead_letter_query(principal, kind), SCAN_LIMIT)

    async def lines() -> AsyncIterator[str]:
        for start in range(0, len(jobs), 100):
            for item in await _with_errors(ctx.temporal, ctx.settings, jobs[start : start + 100]):
                yield item.model_dump_json() + "\n"

    return lines()


async def stats_by_error(
    ctx: Context, principal: Principal, kind: OperationKind | None = None
) -> ErrorStats:
    """Parked jobs counted by error type and failed step (up to 10,000 jobs read)."""
    items = await _parked(ctx, principal, kind, SCAN_LIMIT)
    counts = Counter((i.error_type, i.step) for i in items)
    examples: dict[tuple[str | None, str | None], DeadLetter] = {}
    for item in items:
        examples.setdefault((item.error_type, item.step), item)
    groups = [
        ErrorGroup(
            error_type=key[0],
            step=key[1],
            count=count,
            example_id=examples[key].id,
            example_error=examples[key].error,
        )
        for key, count in counts.most_common()
    ]
    return ErrorStats(total=len(items), groups=groups)


async def _retry_one(client: Client, principal: Principal, job_id: str) -> RetryResult:
    try:
        job, _ = await describe_job(client, job_id, principal)
        if not job.parked:
            return RetryResult(id=job_id, outcome="not_parked", message=f"status {job.status}")
        await signal_retry(client, job.id)
    except NotFound:
        return RetryResult(id=job_id, outcome="not_found")
    except Conflict as exc:
        return RetryResult(id=job_id, outcome="not_parked", message=exc.message)
    except ServiceUnavailable as exc:
        return RetryResult(id=job_id, outcome="unavailable", message=exc.message)
    return RetryResult(id=job_id, outcome="retried")


async def retry_many(
    ctx: Context,
    admin: Principal,
    ids: list[str] | None = None,
    kind: OperationKind | None = None,
) -> BulkRetryResult:
    """Retry up to 1,000 parked jobs of the admin's own tenant: ``ids``, or every parked job of
    ``kind`` (one of the two). Each id gets its outcome; ids that are not parked are left alone."""
    if (ids is None) == (kind is None):
        raise InvalidInput("give either ids or kind, not both and not neither", field="ids")
    if ids is not None:
        ids = list(dict.fromkeys(ids))
    else:
        jobs = await list_jobs(ctx.temporal, parked_query(admin.in_own_tenant(), kind), MAX_BULK)
        ids = [job.id for job in jobs]
    actor = admin.in_own_tenant()
    results: list[RetryResult] = await bounded(
        ids, lambda job_id: _retry_one(ctx.temporal, actor, job_id)
    )
    retried = sum(r.outcome == "retried" for r in results)
    log.info("bulk retry", tenant=admin.tenant, by=admin.subject, asked=len(ids), retried=retried)
    return BulkRetryResult(requested=len(ids), retried=retried, results=results)


async def retry_dead_letter(ctx: Context, admin: Principal, job_id: str) -> JobAccepted:
    """Retry one parked job of the admin's own tenant; :class:`~domain.errors.Conflict` when it
    is not parked."""
    result = await _retry_one(ctx.temporal, admin.in_own_tenant(), job_id)
    if result.outcome == "not_found":
        raise NotFound("job not found", field="job_id")
    if result.outcome == "not_parked":
        raise Conflict(
            f"job is not waiting for a retry ({result.message}); only a needs_attention job "
            "can be retried",
            field="job_id",
        )
    if result.outcome == "unavailable":
        raise ServiceUnavailable(result.message or "the workflow service is unavailable")
    log.info("dead letter retried", job_id=job_id, by=admin.subject, tenant=admin.tenant)
    return JobAccepted(id=job_id, action="retry", status_url=f"/api/v1/jobs/{job_id}")
