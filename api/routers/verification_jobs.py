"""Content verification jobs: ``POST /api/verification-jobs/verify`` and ``.../proof`` take a file
(multipart: ``file``, ``registryAddress``, ``manifestURI``) and answer 202 at once; the
``Verification``/``Proof`` workflow does the work and ``GET .../{jobId}`` shows its progress.

``?wait=N`` answers with the result when the job is done within N seconds. When Temporal cannot
be reached and ``VERIFICATION_INLINE_FALLBACK`` is on, the API runs the same steps itself and
answers ``{"mode": "sync", "result": ...}`` (the old service's graceful degradation).

Uploads wait in ``VERIFICATION_UPLOAD_DIR`` until their job hashes them; every path that does not
start a job removes the upload before answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as FastApiPath
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import func, select
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError

from activities.verification import VerificationActivities, run_inline
from api import abuse
from api.auth import Principal
from api.callbacks import CallbackView, callback_endpoint, checked_callback
from api.deps import CurrentUser, ReadSessionsDep, SessionFactoryDep, SettingsDep, TemporalDep
from api.errors import error_responses
from api.job_options import start_kwargs
from api.jobs_lookup import bounded
from api.timestamps import UtcDateTime
from api.workflow_starts import nothing_started
from domain.addresses import normalize_evm_address
from domain.content import parse_ipfs_uri
from domain.errors import (
    BadRequest,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
)
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
from runtime.logging import get_logger
from runtime.redact import redact
from runtime.settings import Settings
from runtime.temporal import temporal_unreachable
from store import abuse as abuse_counters
from store.models import VerificationJob, WebhookEndpoint

log = get_logger("api.verification_jobs")
router = APIRouter(prefix="/api/verification-jobs", tags=["verification"])

#: room for the multipart framing and the two text fields around the file
MULTIPART_OVERHEAD = 64 * 1024
COPY_CHUNK = 1024 * 1024
QUERY_TIMEOUT = timedelta(seconds=2)
KINDS = {
    VerificationKind.VERIFY: ("Verification", OperationKind.VERIFICATION),
    VerificationKind.PROOF: ("Proof", OperationKind.PROOF),
}
#: the multipart body, documented by hand: the route reads the form itself, after checking the
#: declared size, so an oversize upload is refused before it is parsed
UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "manifestURI"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "registryAddress": {
                            "type": "string",
                            "description": "ContentRegistry; default CONTENT_REGISTRY_ADDRESS",
                        },
                        "manifestURI": {"type": "string", "description": "ipfs://<cid>[/path]"},
                        "callback_url": {
                            "type": "string",
                            "description": "where verification.completed is sent, signed",
                        },
                    },
                }
            }
        },
    }
}


class Accepted(BaseModel):
    mode: str = "async"
    jobId: str
    status: str
    message: str
    pollUrl: str
    #: with a callback_url: its endpoint id and signing secret (shown once)
    callback: CallbackView | None = None


class JobView(BaseModel):
    id: str
    jobId: str
    type: str
    status: str
    progress: int
    mode: str
    contentHash: str | None
    manifestUri: str
    registryAddress: str
    fileName: str | None
    fileSize: int
    result: dict[str, Any] | None
    error: str | None
    createdAt: UtcDateTime
    startedAt: UtcDateTime | None
    completedAt: UtcDateTime | None
    pollUrl: str


class JobList(BaseModel):
    jobs: list[JobView]
    total: int
    limit: int
    offset: int


class JobStats(BaseModel):
    #: whether jobs can be queued now (Temporal answers); when not, the inline fallback serves
    available: bool
    waiting: int
    active: int
    completed: int
    failed: int


def poll_url(job_id: str) -> str:
    return f"{router.prefix}/{job_id}"


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


# --- the upload -------------------------------------------------------------------------------


class Upload(BaseModel):
    path: Path
    name: str
    file_name: str | None
    size: int
    registry: str
    manifest_uri: str
    callback_url: str | None = None


def _registry(value: str | None, settings: Settings) -> str:
    if value is None or value == "":
        return settings.content_registry_address
    try:
        return normalize_evm_address(value)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="registryAddress") from exc


def _manifest_uri(value: str | None) -> str:
    if not value:
        raise InvalidInput("required: ipfs://<cid>[/path] of the manifest", field="manifestURI")
    if len(value) > 512:
        raise InvalidInput("longer than 512 characters", field="manifestURI")
    try:
        parse_ipfs_uri(value)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="manifestURI") from exc
    return value


def _too_large(settings: Settings) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the file is larger than the limit of {settings.verification_max_upload_bytes} bytes "
        "(VERIFICATION_MAX_UPLOAD_BYTES)",
        field="file",
    )


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


async def _save(file: UploadFile, target: Path, limit: int, settings: Settings) -> int:
    """Copy the upload into the upload folder (disk writes off the event loop)."""
    size = 0
    await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
    try:
        with target.open("wb") as out:
            while chunk := await file.read(COPY_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise _too_large(settings)
                await asyncio.to_thread(out.write, chunk)
    except BaseException:
        await asyncio.to_thread(_remove, target)
        raise
    return size


async def receive_upload(request: Request, settings: Settings, job_id: str) -> Upload:
    """The form, checked field by field; the file copied into the upload folder. Nothing is
    left behind when any check fails (Starlette removes its own spooled copy)."""
    limit = settings.verification_max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
        raise _too_large(settings)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidInput(
            "send multipart/form-data with file, registryAddress and manifestURI", field="file"
        )
    try:
        async with request.form(max_files=1, max_fields=8) as form:
            file = form.get("file")
            if not isinstance(file, UploadFile):
                raise InvalidInput("required: the file to verify", field="file")
            registry_field, uri_field = form.get("registryAddress"), form.get("manifestURI")
            registry = _registry(
                registry_field if isinstance(registry_field, str) else None, settings
            )
            manifest_uri = _manifest_uri(uri_field if isinstance(uri_field, str) else None)
            callback_field = form.get("callback_url")
            callback_url = await checked_callback(
                callback_field if isinstance(callback_field, str) else None, settings
            )
            if file.size is not None and file.size > limit:
                raise _too_large(settings)
            folder = Path(settings.verification_upload_dir)
            name = f"{job_id}.upload"
            size = await _save(file, folder / name, limit, settings)
            if size == 0:
                await asyncio.to_thread(_remove, folder / name)
                raise InvalidInput("the file is empty", field="file")
            return Upload(
                path=folder / name,
                name=name,
                file_name=(file.filename or None) and file.filename[:255],
                size=size,
                registry=registry,
                manifest_uri=manifest_uri,
                callback_url=callback_url,
            )
    except MultiPartException as exc:
        raise BadRequest(f"the multipart body cannot be read: {exc.message}") from exc


# --- starting and answering -------------------------------------------------------------------


def _wait_seconds(wait: float | None, settings: Settings) -> float | None:
    if wait is None:
        return None
    if wait > settings.verification_max_wait_seconds:
        raise InvalidInput(
            f"at most {settings.verification_max_wait_seconds:g} seconds "
            "(VERIFICATION_MAX_WAIT_SECONDS)",
            field="wait",
        )
    return wait


async def _inline(
    request: Request, inputs: VerificationInput, sessions: SessionFactoryDep
) -> JSONResponse:
    """Temporal is unreachable: the same steps, here, now; the job is kept as ``mode: sync``."""
    app = request.app
    steps = VerificationActivities(
        app.state.ipfs, app.state.evm, sessions, Path(app.state.settings.verification_upload_dir)
    )
    started = datetime.now(UTC)
    try:
        status, result, error = await run_inline(steps, inputs)
    except Exception:  # the chain could not be read: no verdict, so nothing is kept
        folder = Path(app.state.settings.verification_upload_dir)
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
    return JSONResponse({**job.model_dump(mode="json"), "mode": "sync"})


async def _waited(
    temporal: Client,
    reads: ReadSessionsDep,
    job_id: str,
    seconds: float,
    callback: CallbackView | None = None,
) -> JSONResponse | None:
    handle = temporal.get_workflow_handle(workflow_id_for(job_id))
    try:
        await asyncio.wait_for(handle.result(), timeout=seconds)
    except (TimeoutError, WorkflowFailureError, RPCError):
        return None  # not done in time (or Temporal went away): the job is queued, poll it
    async with reads() as session:
        row = await session.get(VerificationJob, job_id)
    if row is None or row.status not in FINAL_STATUSES:
        return None
    job = view(row)
    extra = {"callback": callback.model_dump()} if callback else {}
    return JSONResponse({**job.model_dump(mode="json"), "mode": "sync", **extra})


async def _forget(
    sessions: SessionFactoryDep,
    job_id: str,
    upload: Path,
    callback: WebhookEndpoint | None = None,
) -> None:
    """No job was started: neither its row, its callback nor its upload is kept."""
    await asyncio.to_thread(_remove, upload)
    async with sessions.begin() as session:
        row = await session.get(VerificationJob, job_id)
        if row is not None:
            await session.delete(row)
        endpoint = await session.get(WebhookEndpoint, callback.id) if callback else None
        if endpoint is not None:
            await session.delete(endpoint)


async def submit(
    kind: VerificationKind,
    request: Request,
    principal: Principal,
    settings: Settings,
    sessions: SessionFactoryDep,
    reads: ReadSessionsDep,
    temporal: Client,
    wait: float | None,
) -> JSONResponse:
    wait = _wait_seconds(wait, settings)
    job_id = uuid.uuid4().hex
    upload = await receive_upload(request, settings, job_id)
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
    start = partial(
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
        await start()
    except (RPCError, RuntimeError) as exc:
        if not temporal_unreachable(exc):
            await _forget(sessions, job_id, upload.path, callback)
            raise
        if await nothing_started(temporal, workflow_id_for(job_id), exc, retry=start):
            if settings.verification_inline_fallback:
                return await _inline(request, inputs, sessions)
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
        answered = await _waited(temporal, reads, job_id, wait, callback_view)
        if answered is not None:
            return answered
    accepted = Accepted(
        jobId=job_id,
        status=JobStatus.QUEUED.value,
        message=f"{kind.value} job queued; poll pollUrl for its progress and result",
        pollUrl=poll_url(job_id),
        callback=callback_view,
    )
    return JSONResponse(accepted.model_dump(), status_code=202)


WaitQuery = Annotated[
    float | None,
    Query(ge=0, description="answer with the result if the job is done within this many seconds"),
]
ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"description": "done within ?wait=, or run inline (Temporal unreachable)"},
    202: {"model": Accepted, "description": "queued: poll pollUrl"},
    **error_responses(400, 401, 413, 422, 503),
}


@router.post("/verify", status_code=202, responses=ANSWERS, openapi_extra=UPLOAD_BODY)
async def verify(
    request: Request,
    principal: CurrentUser,
    settings: SettingsDep,
    sessions: SessionFactoryDep,
    reads: ReadSessionsDep,
    temporal: TemporalDep,
    wait: WaitQuery = None,
) -> JSONResponse:
    """Check a file against its manifest, the manifest's signer and the ContentRegistry."""
    return await submit(
        VerificationKind.VERIFY, request, principal, settings, sessions, reads, temporal, wait
    )


@router.post("/proof", status_code=202, responses=ANSWERS, openapi_extra=UPLOAD_BODY)
async def proof(
    request: Request,
    principal: CurrentUser,
    settings: SettingsDep,
    sessions: SessionFactoryDep,
    reads: ReadSessionsDep,
    temporal: TemporalDep,
    wait: WaitQuery = None,
) -> JSONResponse:
    """Like ``verify``, and the result carries a bundle a third party can check offline."""
    return await submit(
        VerificationKind.PROOF, request, principal, settings, sessions, reads, temporal, wait
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


@router.get("/stats", response_model=JobStats, responses=error_responses(401))
async def stats(principal: CurrentUser, reads: ReadSessionsDep, temporal: TemporalDep) -> JobStats:
    """The caller's jobs by status (an admin's: the tenant's; a platform_admin's: everyone's),
    Bull's job counts by another name: ``waiting`` = queued."""
    async with reads() as session:
        rows = await session.execute(
            select(VerificationJob.status, func.count())
            .where(*_scope(principal))
            .group_by(VerificationJob.status)
        )
        counts = {status: int(count) for status, count in rows.all()}
    return JobStats(
        available=await _available(temporal),
        waiting=counts.get(JobStatus.QUEUED.value, 0),
        active=counts.get(JobStatus.ACTIVE.value, 0),
        completed=counts.get(JobStatus.COMPLETED.value, 0),
        failed=counts.get(JobStatus.FAILED.value, 0),
    )


@router.get("", response_model=JobList, responses=error_responses(401, 422))
async def list_jobs(
    principal: CurrentUser,
    reads: ReadSessionsDep,
    temporal: TemporalDep,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> JobList:
    """Newest first, with the live progress of each running job (as its own GET shows it)."""
    where = _scope(principal)
    if status is not None:
        where.append(VerificationJob.status == status.value)
    async with reads() as session:
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
    lives = await bounded(rows, lambda r: _live(temporal, r))
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


@router.get("/{job_id}", response_model=JobView, responses=error_responses(401, 404, 422))
async def get_job(
    job_id: Annotated[str, FastApiPath(max_length=64)],
    principal: CurrentUser,
    reads: ReadSessionsDep,
    temporal: TemporalDep,
) -> JobView:
    """The job with its live progress while it runs, and its result when done."""
    async with reads() as session:
        row = await session.get(VerificationJob, job_id)
    visible = row is not None and (
        principal.sees_every_tenant
        or (principal.is_admin and row.tenant == principal.tenant)
        or (row.tenant, row.owner) == (principal.tenant, principal.subject)
    )
    if row is None or not visible:
        raise NotFound(f"no verification job {job_id}", field="jobId")
    live = await _live(temporal, row)
    if live is not None and live.status in FINAL_STATUSES:
        async with reads() as session:  # it finished since the read: the row has the outcome
            row = await session.get(VerificationJob, job_id) or row
        live = None
    return view(row, live)
