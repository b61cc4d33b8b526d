"""Dead letters: parked jobs (``SettleStatus="needs_attention"``) of the caller's tenant, and jobs
with a step still failing after ``STEP_ALERT_AFTER_ATTEMPTS`` attempts (``SettleStatus="retrying"``:
listed with the step, its attempt and last error from ``describe``; they take no ``retry``,
Temporal is retrying them); admins (a ``platform_admin`` reads every tenant's, and retries none:
that is the tenant admin's call).

Lists come from Temporal visibility (eventually consistent: a job parked a second ago may not be
listed yet). The error of each parked job, and its type, come from the workflow's ``status`` query
(visibility has no error attribute): ``"credit failed: IdempotencyConflict: ..."`` gives
``step="credit failed"`` and ``error_type="IdempotencyConflict"``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from temporalio.client import Client

from api.auth import Principal
from api.deps import AdminUser, OperatorUser, ReadSessionsDep, SettingsDep, TemporalDep
from api.errors import error_responses
from api.jobs_lookup import (
    JOB_ID_PATTERN,
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
from api.routers.jobs import JobAccepted, JobId
from api.timestamps import UtcDateTime
from domain.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable
from domain.search import OperationKind, OperationStatus
from operations.links import web_ui_url
from operations.unmatched_payments import UnmatchedPaymentView, open_items
from runtime.logging import get_logger
from runtime.settings import Settings
from runtime.stuck_steps import stuck_steps

log = get_logger("api.dead_letter")
router = APIRouter(prefix="/api/v1/dead-letter", tags=["dead-letter"])

#: most parked jobs read by one export, stats or filtered listing
SCAN_LIMIT = 10_000
MAX_BULK = 1000

KindQuery = Annotated[
    OperationKind | None, Query(description="only jobs of this kind (SettleKind)")
]


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
    client: Client, settings: Settings, principal: Principal, kind: OperationKind | None, limit: int
) -> list[DeadLetter]:
    jobs = await list_jobs(client, dead_letter_query(principal, kind), limit)
    return await _with_errors(client, settings, jobs)


@router.get("", response_model=DeadLetterList, responses=error_responses(401, 403, 422, 503))
async def list_dead_letters(
    principal: OperatorUser,
    settings: SettingsDep,
    temporal: TemporalDep,
    reads: ReadSessionsDep,
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
    if error_type is None:
        items = await _parked(temporal, settings, principal, kind, limit)
    else:
        scanned = await _parked(temporal, settings, principal, kind, SCAN_LIMIT)
        items = [i for i in scanned if i.error_type == error_type][:limit]
    unmatched = []
    if kind in (None, OperationKind.MPESA_DEPOSIT) and error_type is None:
        unmatched = await open_items(reads, principal, limit)
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
    principal: OperatorUser, settings: SettingsDep, temporal: TemporalDep, kind: KindQuery = None
) -> StreamingResponse:
    """Every parked job of the tenant (up to 10,000) as JSON lines, one dead letter per line."""
    jobs = await list_jobs(temporal, dead_letter_query(principal, kind), SCAN_LIMIT)

    async def lines() -> AsyncIterator[str]:
        for start in range(0, len(jobs), 100):
            for item in await _with_errors(temporal, settings, jobs[start : start + 100]):
                yield item.model_dump_json() + "\n"

    return StreamingResponse(
        lines(),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="dead-letters.ndjson"'},
    )


@router.get(
    "/stats/by-error", response_model=ErrorStats, responses=error_responses(401, 403, 422, 503)
)
async def stats_by_error(
    principal: OperatorUser, settings: SettingsDep, temporal: TemporalDep, kind: KindQuery = None
) -> ErrorStats:
    """Parked jobs counted by error type and failed step (up to 10,000 jobs read)."""
    items = await _parked(temporal, settings, principal, kind, SCAN_LIMIT)
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


@router.post(
    "/retry", response_model=BulkRetryResult, responses=error_responses(401, 403, 422, 503)
)
async def retry_many(
    body: BulkRetry, principal: AdminUser, temporal: TemporalDep
) -> BulkRetryResult:
    """Retry up to 1,000 parked jobs: ``{"ids": [...]}``, or ``{"kind": "mpesa_deposit"}`` for every
    parked job of a kind. Each id gets its outcome; ids that are not parked are left alone."""
    if (body.ids is None) == (body.kind is None):
        raise InvalidInput("give either ids or kind, not both and not neither", field="ids")
    if body.ids is not None:
        ids = list(dict.fromkeys(body.ids))
    else:
        jobs = await list_jobs(
            temporal, parked_query(principal.in_own_tenant(), body.kind), MAX_BULK
        )
        ids = [job.id for job in jobs]
    actor = principal.in_own_tenant()
    results: list[RetryResult] = await bounded(
        ids, lambda job_id: _retry_one(temporal, actor, job_id)
    )
    retried = sum(r.outcome == "retried" for r in results)
    log.info(
        "bulk retry", tenant=principal.tenant, by=principal.subject, asked=len(ids), retried=retried
    )
    return BulkRetryResult(requested=len(ids), retried=retried, results=results)


@router.post(
    "/{job_id}/retry",
    status_code=202,
    response_model=JobAccepted,
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
async def retry_dead_letter(
    job_id: JobId, principal: AdminUser, temporal: TemporalDep
) -> JobAccepted:
    """Retry one parked job of the tenant; 409 when it is not parked."""
    result = await _retry_one(temporal, principal.in_own_tenant(), job_id)
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
    log.info("dead letter retried", job_id=job_id, by=principal.subject, tenant=principal.tenant)
    return JobAccepted(id=job_id, action="retry", status_url=f"/api/v1/jobs/{job_id}")
