"""Content verification and proof jobs: start, get, list and stats.

``POST /api/verification-jobs/verify`` and ``.../proof`` receive the upload and call
:func:`start`; the ``Verification``/``Proof`` workflow does the work and :func:`get` shows its
progress. With ``wait`` the answer is the result when the job is done within that many seconds.
When Temporal cannot be reached and ``VERIFICATION_INLINE_FALLBACK`` is on, the same steps run
here and the job is kept as ``mode: sync`` (the old service's graceful degradation).

Every path that does not start a job removes the upload before answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError

from activities.verification import VerificationActivities, run_inline
from api import abuse
from api.auth import Principal
from api.callbacks import CallbackView, callback_endpoint
from api.job_options import start_kwargs
from api.jobs_lookup import bounded
from api.workflow_starts import nothing_started
from domain.errors import InvalidInput, NotFound, ServiceUnavailable
from domain.events import EventType
from domain.queues import workflow_queue
from domain.search import OperationKind, start_attributes
from domain.verification import (
    FINAL_STATUSES,
    JobStatus,
    VerificationInput,
    VerificationKind,
    VerificationState,
    workflow_id_for,
)
from operations.context import Context
from operations.verification_jobs_models import (
    Accepted,
    Done,
    JobList,
    JobStats,
    JobView,
    Upload,
)
from runtime.logging import get_logger
from runtime.redact import redact
from runtime.settings import Settings
from runtime.temporal import temporal_unreachable
from store import abuse as abuse_counters
from store.models import VerificationJob, WebhookEndpoint

#: the logger's name from when this lived in the router: the log lines are unchanged
log = get_logger("api.verification_jobs")

#: where the jobs are read over HTTP (the router's prefix)
BASE = "/api/verification-jobs"
QUERY_TIMEOUT = timedelta(seconds=2)
KINDS = {
    VerificationKind.VERIFY: ("Verification", OperationKind.VERIFICATION),
    VerificationKind.PROOF: ("Proof", OperationKind.PROOF),
}


def poll_url(job_id: str) -> str:
    return f"{BASE}/{job_id}"


def new_job_id() -> str:
    """A job's id, chosen before its upload is received (the upload is saved under it)."""
    return uuid.uuid4().hex


def view(row: VerificationJob, live: VerificationState | None = None) -> JobView:
    status, progress, content_hash = row.status, row.progress, row.content_hash
    if live is not None and row.status not in FINAL_STATUSES:
        status, progress = live.status.value, live.progress
        content_hash = live.content_hash or content_hash
    return JobView(
        id=row.id,
        jobId=row.id,
        type=row.kind,
        status=status,
        progress=progress,
        mode=row.mode,
        contentHash=content_hash,
        manifestUri=row.manifest_uri,
        registryAddress=row.registry_address,
        fileName=row.file_name,
        fileSize=row.file_size,
        result=json.loads(row.result) if row.result else None,
        error=redact(row.error) if row.error else None,
        createdAt=row.created_at,
        startedAt=row.started_at,
        completedAt=row.completed_at,
        pollUrl=poll_url(row.id),
    )


def remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def wait_seconds(wait: float | None, settings: Settings) -> float | None:
    """``wait`` checked against ``VERIFICATION_MAX_WAIT_SECONDS`` (422 naming ``wait``)."""
    if wait is None:
        return None
    if wait > settings.verification_max_wait_seconds:
        raise InvalidInput(
            f"at most {settings.verification_max_wait_seconds:g} seconds "
            "(VERIFICATION_MAX_WAIT_SECONDS)",
            field="wait",
        )
    return wait


async def _inline(ctx: Context, inputs: VerificationInput) -> Done:
    """Temporal is unreachable: the same steps, here, now; the job is kept as ``mode: sync``."""
    sessions, folder = ctx.sessions, Path(ctx.settings.verification_upload_dir)
    steps = VerificationActivities(ctx.state.ipfs, ctx.state.evm, sessions, folder)
    started = datetime.now(UTC)
    try:
        status, result, error = await run_inline(steps, inputs)
    except Exception:  # the chain could not be read: no verdict, so nothing is kept
        await _forget(sessions, inputs.job_id, folder / inputs.upload)
        raise
    async with sessions.begin() as session:
        row = await session.get(VerificationJob, inputs.job_id)
        assert row is not None
        row.mode, row.status, row.progress = "sync", status.value, 100
        row.content_hash = result.fileHash if result else None
        row.result = result.model_dump_json() if result else None
        row.error, row.started_at, row.completed_at = error, started, datetime.now(UTC)
        job = view(row)
    log.info("verification ran inline", job_id=inputs.job_id, status=status.value)
    return Done(job=job)


async def _waited(
    ctx: Context, job_id: str, seconds: float, callback: CallbackView | None = None
) -> Done | None:
    handle = ctx.temporal.get_workflow_handle(workflow_id_for(job_id))
    try:
        await asyncio.wait_for(handle.result(), timeout=seconds)
    except (TimeoutError, WorkflowFailureError, RPCError):
        return None  # not done in time (or Temporal went away): the job is queued, poll it
    async with ctx.reads() as session:
        row = await session.get(VerificationJob, job_id)
    if row is None or row.status not in FINAL_STATUSES:
        return None
    return Done(job=view(row), callback=callback)


async def _forget(
    sessions: async_sessionmaker[AsyncSession],
    job_id: str,
    upload: Path,
    callback: WebhookEndpoint | None = None,
) -> None:
    """No job was started: neither its row, its callback nor its upload is kept."""
    await asyncio.to_thread(remove, upload)
    async with sessions.begin() as session:
        row = await session.get(VerificationJob, job_id)
        if row is not None:
            await session.delete(row)
        endpoint = await session.get(WebhookEndpoint, callback.id) if callback else None
        if endpoint is not None:
            await session.delete(endpoint)


async def start(
    ctx: Context,
    principal: Principal,
    kind: VerificationKind,
    job_id: str,
    upload: Upload,
    wait: float | None = None,
) -> Accepted | Done:
    """Queue a job for ``upload`` (received under ``job_id``, see :func:`new_job_id`):
    :class:`Accepted` (202), or :class:`Done` (200, ``mode: sync``) when it ended within
    ``wait`` seconds or ran inline. When no job starts the upload is removed."""
    settings, sessions, temporal = ctx.settings, ctx.sessions, ctx.temporal
    wait = wait_seconds(wait, settings)
    workflow_name, operation = KINDS[kind]
    callback = (
        callback_endpoint(
            principal.tenant, upload.callback_url, [EventType.VERIFICATION_COMPLETED.value]
        )
        if upload.callback_url
        else None
    )
    inputs = VerificationInput(
        job_id=job_id,
        kind=kind,
        upload=upload.name,
        registry=upload.registry,
        manifest_uri=upload.manifest_uri,
        task_queue_prefix=settings.task_queue_prefix,
        tenant=principal.tenant,
        callback_endpoint_ids=[callback.id] if callback else [],
    )
    callback_view = (
        CallbackView(endpoint_id=callback.id, secret=callback.secret) if callback else None
    )
    start_workflow = partial(
        temporal.start_workflow,
        workflow_name,
        inputs,
        id=workflow_id_for(job_id),
        task_queue=workflow_queue(settings.task_queue_prefix),
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=start_attributes(operation, principal.tenant, principal.subject),
        **start_kwargs(),
    )
    try:
        async with sessions.begin() as session:
            await abuse_counters.take(session, abuse.verification(settings, principal))
            session.add(
                VerificationJob(
                    id=job_id,
                    tenant=principal.tenant,
                    owner=principal.subject,
                    kind=kind.value,
                    status=JobStatus.QUEUED.value,
                    progress=0,
                    mode="async",
                    registry_address=upload.registry,
                    manifest_uri=upload.manifest_uri,
                    file_name=upload.file_name,
                    file_size=upload.size,
                    workflow_id=workflow_id_for(job_id),
                )
            )
            if callback is not None:
                session.add(callback)
        await start_workflow()
    except (RPCError, RuntimeError) as exc:
        if not temporal_unreachable(exc):
            await _forget(sessions, job_id, upload.path, callback)
            raise
        if await nothing_started(temporal, workflow_id_for(job_id), exc, retry=start_workflow):
            if settings.verification_inline_fallback:
                return await _inline(ctx, inputs)
            await _forget(sessions, job_id, upload.path, callback)
            raise ServiceUnavailable(
                "the workflow service is unavailable; nothing was queued or kept"
            ) from exc
        # else it may have started: the job and its upload stay, and the answer is 202
    except BaseException:
        await _forget(sessions, job_id, upload.path, callback)
        raise
    log.info("verification queued", job_id=job_id, kind=kind.value, size=upload.size)
    if wait:
        answered = await _waited(ctx, job_id, wait, callback_view)
        if answered is not None:
            return answered
    return Accepted(
        jobId=job_id,
        status=JobStatus.QUEUED.value,
        message=f"{kind.value} job queued; poll pollUrl for its progress and result",
        pollUrl=poll_url(job_id),
        callback=callback_view,
    )


# --- reading ----------------------------------------------------------------------------------


def _scope(principal: Principal) -> list[Any]:
    """A caller sees their own jobs; a tenant's admin every job of the tenant; a platform_admin
    every job."""
    if principal.sees_every_tenant:
        return []
    if principal.is_admin:
        return [VerificationJob.tenant == principal.tenant]
    return [VerificationJob.tenant == principal.tenant, VerificationJob.owner == principal.subject]


async def _available(temporal: Client) -> bool:
    with contextlib.suppress(Exception):
        return bool(await temporal.service_client.check_health(timeout=QUERY_TIMEOUT))
    return False


async def stats(ctx: Context, principal: Principal) -> JobStats:
    """The caller's jobs by status (an admin's: the tenant's; a platform_admin's: everyone's)."""
    async with ctx.reads() as session:
        rows = await session.execute(
            select(VerificationJob.status, func.count())
            .where(*_scope(principal))
            .group_by(VerificationJob.status)
        )
        counts = {status: int(count) for status, count in rows.all()}
    return JobStats(
        available=await _available(ctx.temporal),
        waiting=counts.get(JobStatus.QUEUED.value, 0),
        active=counts.get(JobStatus.ACTIVE.value, 0),
        completed=counts.get(JobStatus.COMPLETED.value, 0),
        failed=counts.get(JobStatus.FAILED.value, 0),
    )


async def list_jobs(
    ctx: Context,
    principal: Principal,
    status: JobStatus | None = None,
    limit: int = 20,
    offset: int = 0,
) -> JobList:
    """Newest first, with the live progress of each running job (as its own GET shows it)."""
    where = _scope(principal)
    if status is not None:
        where.append(VerificationJob.status == status.value)
    async with ctx.reads() as session:
        total = (
            await session.execute(select(func.count()).select_from(VerificationJob).where(*where))
        ).scalar_one()
        rows = (
            (
                await session.execute(
                    select(VerificationJob)
                    .where(*where)
                    .order_by(VerificationJob.created_at.desc(), VerificationJob.id)
                    .limit(limit)
                    .offset(offset)
                )
            )
            .scalars()
            .all()
        )
    lives = await bounded(rows, lambda r: _live(ctx.temporal, r))
    jobs = [
        view(r, live if live is None or live.status not in FINAL_STATUSES else None)
        for r, live in zip(rows, lives, strict=True)
    ]
    return JobList(jobs=jobs, total=total, limit=limit, offset=offset)


async def _live(temporal: Client, row: VerificationJob) -> VerificationState | None:
    """The running workflow's own progress (None when it cannot say quickly)."""
    if row.status in FINAL_STATUSES or row.mode != "async":
        return None
    handle = temporal.get_workflow_handle(row.workflow_id)
    with contextlib.suppress(Exception):
        return await asyncio.wait_for(
            handle.query("status", result_type=VerificationState),
            timeout=QUERY_TIMEOUT.total_seconds(),
        )
    return None


async def get(ctx: Context, principal: Principal, job_id: str) -> JobView:
    """The job with its live progress while it runs, and its result when done; 404 unless the
    caller may see it."""
    reads = ctx.reads
    async with reads() as session:
        row = await session.get(VerificationJob, job_id)
    visible = row is not None and (
        principal.sees_every_tenant
        or (principal.is_admin and row.tenant == principal.tenant)
        or (row.tenant, row.owner) == (principal.tenant, principal.subject)
    )
    if row is None or not visible:
        raise NotFound(f"no verification job {job_id}", field="jobId")
    live = await _live(ctx.temporal, row)
    if live is not None and live.status in FINAL_STATUSES:
        async with reads() as session:  # it finished since the read: the row has the outcome
            row = await session.get(VerificationJob, job_id) or row
        live = None
    return view(row, live)
