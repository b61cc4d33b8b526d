"""Queues: an operation kind (``mpesa_deposit``, ``ticket_purchase`` ...) and its task queues.

Reads are for ``admin`` and ``venue_admin`` (their tenant's jobs) and ``platform_admin`` (every
tenant's); clear is a tenant ``admin``'s (their tenant's jobs); pause and resume, which hold a
shared queue for every tenant, are ``platform_admin``'s. Job counts and lists come from Temporal
visibility. Pause and resume act on the
server (the activity task queues' rate limit, see ``api/task_queue_limits.py``), so they hold for
every worker and every tenant, and they hold every kind sharing one of those task queues too: the
answer names them (``also_holds``).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api import cursors
from api.auth import Principal
from api.deps import AdminUser, PlatformAdmin, SettingsDep, StaffUser, TemporalDep
from api.errors import error_responses
from api.jobs_lookup import (
    JobRef,
    bounded,
    list_jobs,
    quote,
    raise_if_unreachable,
    tenant_query,
)
from api.task_queue_limits import QueueLimit, default_rate, describe, hold, release
from api.timestamps import UtcDateTime
from domain.errors import InvalidInput, NotFound
from domain.operation_queues import KIND_QUEUES, sharing
from domain.queues import activity_queue_for_prefix, workflow_queue
from domain.search import OperationKind, OperationStatus
from runtime.logging import get_logger
from runtime.settings import Settings

log = get_logger("api.queues")
router = APIRouter(prefix="/api/v1/queues", tags=["queues"])

MAX_PAGE = 1000
#: most open jobs one clear cancels
MAX_CLEAR = 10_000

QueueName = Annotated[
    str,
    Path(
        pattern=r"^[a-z_]{1,40}$",
        description="the operation kind (SettleKind), e.g. mpesa_deposit",
        examples=["mpesa_deposit"],
    ),
]


class TaskQueueState(BaseModel):
    task_queue: str
    system: str
    #: the server-side rate limit in requests per second; None: none set (the server's default)
    rate_per_second: float | None
    #: dispatch stopped (limit 0): activities wait in the backlog
    stopped: bool
    #: who holds it at 0: ``queue:<kind>`` for a paused queue, ``emergency-stop``
    held_by: list[str]
    reason: str | None
    updated_at: UtcDateTime | None
    #: activity tasks waiting (as the server estimates it); None where it does not report it
    backlog: int | None
    backlog_age_seconds: float | None


class QueueInfo(BaseModel):
    name: str
    workflow_task_queue: str
    activity_task_queues: list[str]
    #: kinds sharing one of these activity task queues (a pause holds them too)
    shares_task_queues_with: list[str]


class QueueList(BaseModel):
    items: list[QueueInfo]


class QueueStatus(BaseModel):
    name: str
    #: every activity task queue of the kind is held by its pause
    paused: bool
    #: this tenant's jobs of the kind by SettleStatus (from visibility, eventually consistent)
    counts: dict[str, int]
    total: int
    task_queues: list[TaskQueueState]


class QueueJob(BaseModel):
    id: str
    run_id: str | None
    user: str | None
    status: str | None
    temporal_status: str | None
    started_at: UtcDateTime | None
    closed_at: UtcDateTime | None


class QueueJobs(BaseModel):
    items: list[QueueJob]
    #: pass as ``cursor`` for the next page; None on the last page
    next_cursor: str | None


class QueueAction(BaseModel):
    name: str
    action: Literal["pause", "resume"]
    paused: bool
    #: other kinds whose activities wait too while this queue is paused
    also_holds: list[str]
    task_queues: list[TaskQueueState]


ClearOutcome = Literal["cancel_requested", "closed", "unavailable"]


class ClearResult(BaseModel):
    id: str
    outcome: ClearOutcome


class ClearSummary(BaseModel):
    name: str
    requested: int
    cancel_requested: int
    results: list[ClearResult]


def kind_of(name: str) -> OperationKind:
    try:
        return OperationKind(name)
    except ValueError:
        known = ", ".join(k.value for k in OperationKind)
        raise NotFound(f"no queue named {name!r}; queues: {known}", field="name") from None


def holder(kind: OperationKind) -> str:
    return f"queue:{kind.value}"


def _state(limit: QueueLimit, system: str) -> TaskQueueState:
    return TaskQueueState(
        task_queue=limit.task_queue,
        system=system,
        rate_per_second=limit.rate_per_second,
        stopped=limit.stopped,
        held_by=limit.holders,
        reason=limit.reason,
        updated_at=limit.updated_at,
        backlog=limit.backlog,
        backlog_age_seconds=limit.backlog_age_seconds,
    )


async def _task_queues(client: Client, settings: Settings, kind: OperationKind) -> list[QueueLimit]:
    prefix = settings.task_queue_prefix
    return list(
        await asyncio.gather(
            *(describe(client, activity_queue_for_prefix(prefix, q)) for q in KIND_QUEUES[kind])
        )
    )


def _states(kind: OperationKind, limits: list[QueueLimit]) -> list[TaskQueueState]:
    return [_state(limit, q.value) for limit, q in zip(limits, KIND_QUEUES[kind], strict=True)]


def _paused(kind: OperationKind, limits: list[QueueLimit]) -> bool:
    return all(holder(kind) in limit.holders for limit in limits)


def kind_query(principal: Principal, kind: OperationKind, *clauses: str) -> str:
    return tenant_query(principal, f"SettleKind = {quote(kind.value)}", *clauses)


@router.get("", response_model=QueueList, responses=error_responses(401, 403))
async def list_queues(_principal: StaffUser, settings: SettingsDep) -> QueueList:
    """Every operation kind with its workflow and activity task queues."""
    prefix = settings.task_queue_prefix
    return QueueList(
        items=[
            QueueInfo(
                name=kind.value,
                workflow_task_queue=workflow_queue(prefix),
                activity_task_queues=[activity_queue_for_prefix(prefix, q) for q in queues],
                shares_task_queues_with=[k.value for k in sharing(kind)],
            )
            for kind, queues in KIND_QUEUES.items()
        ]
    )


async def _count(client: Client, query: str) -> int:
    try:
        return (await client.count_workflows(query)).count
    except (RPCError, RuntimeError) as exc:
        raise_if_unreachable(exc)
        raise


@router.get(
    "/{name}/status", response_model=QueueStatus, responses=error_responses(401, 403, 404, 422, 503)
)
async def queue_status(
    name: QueueName, principal: StaffUser, settings: SettingsDep, temporal: TemporalDep
) -> QueueStatus:
    """Jobs of the kind in the caller's tenant by status, and each activity task queue's limit
    and backlog. Same as ``temporal workflow count --query 'SettleKind="..." AND ...'`` and
    ``temporal task-queue describe --task-queue settle-mpesa --report-config``."""
    kind = kind_of(name)
    statuses = list(OperationStatus)
    counts, limits = await asyncio.gather(
        asyncio.gather(
            *(
                _count(temporal, kind_query(principal, kind, f"SettleStatus = {quote(s.value)}"))
                for s in statuses
            )
        ),
        _task_queues(temporal, settings, kind),
    )
    by_status = {s.value: n for s, n in zip(statuses, counts, strict=True)}
    return QueueStatus(
        name=kind.value,
        paused=_paused(kind, limits),
        counts=by_status,
        total=sum(by_status.values()),
        task_queues=_states(kind, limits),
    )


@router.get(
    "/{name}/jobs", response_model=QueueJobs, responses=error_responses(401, 403, 404, 422, 503)
)
async def queue_jobs(
    name: QueueName,
    principal: StaffUser,
    settings: SettingsDep,
    temporal: TemporalDep,
    status: Annotated[
        OperationStatus | None, Query(description="only jobs with this SettleStatus")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[
        str | None,
        Query(pattern=r"^[A-Za-z0-9_=-]{1,4096}$", description="next_cursor of the previous page"),
    ] = None,
) -> QueueJobs:
    """The tenant's jobs of the kind, newest first, one page at a time."""
    kind = kind_of(name)
    clauses = [f"SettleStatus = {quote(status.value)}"] if status else []
    query = kind_query(principal, kind, *clauses)
    listing = temporal.list_workflows(
        query, page_size=limit, next_page_token=cursors.decode(settings, query, cursor)
    )
    try:
        await listing.fetch_next_page(page_size=limit)
    except (RPCError, RuntimeError) as exc:
        if isinstance(exc, RPCError) and exc.status == RPCStatusCode.INVALID_ARGUMENT and cursor:
            raise InvalidInput(cursors.NOT_OURS, field="cursor") from exc
        raise_if_unreachable(exc)
        raise
    jobs = [JobRef.of(w) for w in listing.current_page or []]
    token = listing.next_page_token
    return QueueJobs(
        items=[
            QueueJob(
                id=j.id,
                run_id=j.run_id,
                user=j.user,
                status=j.status,
                temporal_status=j.temporal_status,
                started_at=j.started_at,
                closed_at=j.closed_at,
            )
            for j in jobs
        ],
        next_cursor=cursors.encode(settings, query, token),
    )


@router.post(
    "/{name}/pause", response_model=QueueAction, responses=error_responses(401, 403, 404, 422, 503)
)
async def pause_queue(
    name: QueueName, principal: PlatformAdmin, settings: SettingsDep, temporal: TemporalDep
) -> QueueAction:
    """Stop dispatching the kind's activities (rate limit 0 on each of its activity task queues).
    Running activities finish; scheduled ones wait in the backlog, nothing is lost. Same as
    ``temporal task-queue config set --task-queue settle-mpesa --task-queue-type activity
    --queue-rps-limit 0`` for each task queue."""
    kind = kind_of(name)
    prefix = settings.task_queue_prefix
    note = f"queue {kind.value} paused by {principal.subject}"
    limits = [
        await hold(temporal, activity_queue_for_prefix(prefix, q), holder(kind), note)
        for q in KIND_QUEUES[kind]
    ]
    log.info("queue paused", queue=kind.value, by=principal.subject, tenant=principal.tenant)
    return QueueAction(
        name=kind.value,
        action="pause",
        paused=_paused(kind, limits),
        also_holds=[k.value for k in sharing(kind)],
        task_queues=_states(kind, limits),
    )


@router.post(
    "/{name}/resume", response_model=QueueAction, responses=error_responses(401, 403, 404, 422, 503)
)
async def resume_queue(
    name: QueueName, principal: PlatformAdmin, settings: SettingsDep, temporal: TemporalDep
) -> QueueAction:
    """Let the kind's activities be dispatched again: each task queue returns to its configured
    limit, unless something else (another paused kind, an emergency stop) still holds it."""
    kind = kind_of(name)
    prefix = settings.task_queue_prefix
    note = f"queue {kind.value} resumed by {principal.subject}"
    limits = [
        await release(
            temporal,
            activity_queue_for_prefix(prefix, q),
            holder(kind),
            default_rate(settings, q),
            note,
        )
        for q in KIND_QUEUES[kind]
    ]
    log.info("queue resumed", queue=kind.value, by=principal.subject, tenant=principal.tenant)
    return QueueAction(
        name=kind.value,
        action="resume",
        paused=_paused(kind, limits),
        also_holds=[],
        task_queues=_states(kind, limits),
    )


async def _cancel(client: Client, principal: Principal, job_id: str) -> ClearResult:
    try:
        await client.get_workflow_handle(job_id).cancel(
            reason=f"queue cleared by {principal.subject}"
        )
    except (RPCError, RuntimeError) as exc:
        if isinstance(exc, RPCError) and exc.status == RPCStatusCode.NOT_FOUND:
            return ClearResult(id=job_id, outcome="closed")
        return ClearResult(id=job_id, outcome="unavailable")
    return ClearResult(id=job_id, outcome="cancel_requested")


@router.post(
    "/{name}/clear", response_model=ClearSummary, responses=error_responses(401, 403, 404, 422, 503)
)
async def clear_queue(
    name: QueueName,
    principal: AdminUser,
    temporal: TemporalDep,
    confirm: Annotated[bool, Query(description="must be true: cancels every open job")] = False,
) -> ClearSummary:
    """Request cancellation of every open job of the kind in the caller's tenant (up to 10,000).
    Each workflow decides what cancelling means (compensations run; a deposit whose customer was
    already prompted refuses). Same as ``temporal workflow cancel --query '...'``."""
    kind = kind_of(name)
    if not confirm:
        raise InvalidInput(
            "clearing cancels every open job of the queue; pass confirm=true", field="confirm"
        )
    jobs = await list_jobs(
        temporal,
        kind_query(principal.in_own_tenant(), kind, 'ExecutionStatus = "Running"'),
        MAX_CLEAR,
    )
    results: list[ClearResult] = await bounded(
        [j.id for j in jobs], lambda job_id: _cancel(temporal, principal, job_id)
    )
    cancelled = sum(r.outcome == "cancel_requested" for r in results)
    log.info(
        "queue cleared",
        queue=kind.value,
        by=principal.subject,
        tenant=principal.tenant,
        cancelled=cancelled,
    )
    return ClearSummary(
        name=kind.value, requested=len(jobs), cancel_requested=cancelled, results=results
    )
