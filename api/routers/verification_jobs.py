"""Content verification jobs: ``POST /api/verification-jobs/verify`` and ``.../proof`` take a file
(multipart: ``file``, ``registryAddress``, ``manifestURI``) and answer 202 at once; the
``Verification``/``Proof`` workflow does the work and ``GET .../{jobId}`` shows its progress.

``?wait=N`` answers with the result when the job is done within N seconds. When Temporal cannot
be reached and ``VERIFICATION_INLINE_FALLBACK`` is on, the API runs the same steps itself and
answers ``{"mode": "sync", "result": ...}`` (the old service's graceful degradation).

Uploads wait in ``VERIFICATION_UPLOAD_DIR`` until their job hashes them; every path that does not
start a job removes the upload before answering.

The routes translate HTTP (the multipart upload, the 200/202 answers); the operations are in
:mod:`operations.verification_jobs`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as FastApiPath
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from api.auth import Principal
from api.callbacks import checked_callback
from api.deps import ContextDep, CurrentUser
from api.errors import error_responses
from domain.addresses import normalize_evm_address
from domain.content import parse_ipfs_uri
from domain.errors import BadRequest, InvalidInput, PayloadTooLarge
from domain.verification import JobStatus, VerificationKind
from operations import verification_jobs
from operations.context import Context
from operations.verification_jobs_models import (
    Accepted,
    Done,
    JobList,
    JobStats,
    JobView,
    Upload,
)
from runtime.settings import Settings

router = APIRouter(prefix=verification_jobs.BASE, tags=["verification"])

#: room for the multipart framing and the two text fields around the file
MULTIPART_OVERHEAD = 64 * 1024
COPY_CHUNK = 1024 * 1024
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


# --- the upload -------------------------------------------------------------------------------


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
        await asyncio.to_thread(verification_jobs.remove, target)
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
                await asyncio.to_thread(verification_jobs.remove, folder / name)
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


def answer(outcome: Accepted | Done) -> JSONResponse:
    """202 with the queued job, or 200 with the finished one (``mode: sync``)."""
    if isinstance(outcome, Accepted):
        return JSONResponse(outcome.model_dump(), status_code=202)
    extra = {"callback": outcome.callback.model_dump()} if outcome.callback else {}
    return JSONResponse({**outcome.job.model_dump(mode="json"), "mode": "sync", **extra})


async def submit(
    kind: VerificationKind,
    request: Request,
    principal: Principal,
    ctx: Context,
    wait: float | None,
) -> JSONResponse:
    wait = verification_jobs.wait_seconds(wait, ctx.settings)
    job_id = verification_jobs.new_job_id()
    upload = await receive_upload(request, ctx.settings, job_id)
    return answer(await verification_jobs.start(ctx, principal, kind, job_id, upload, wait))


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
    ctx: ContextDep,
    wait: WaitQuery = None,
) -> JSONResponse:
    """Check a file against its manifest, the manifest's signer and the ContentRegistry."""
    return await submit(VerificationKind.VERIFY, request, principal, ctx, wait)


@router.post("/proof", status_code=202, responses=ANSWERS, openapi_extra=UPLOAD_BODY)
async def proof(
    request: Request,
    principal: CurrentUser,
    ctx: ContextDep,
    wait: WaitQuery = None,
) -> JSONResponse:
    """Like ``verify``, and the result carries a bundle a third party can check offline."""
    return await submit(VerificationKind.PROOF, request, principal, ctx, wait)


# --- reading ----------------------------------------------------------------------------------


@router.get("/stats", response_model=JobStats, responses=error_responses(401))
async def stats(principal: CurrentUser, ctx: ContextDep) -> JobStats:
    """The caller's jobs by status (an admin's: the tenant's; a platform_admin's: everyone's),
    Bull's job counts by another name: ``waiting`` = queued."""
    return await verification_jobs.stats(ctx, principal)


@router.get("", response_model=JobList, responses=error_responses(401, 422))
async def list_jobs(
    principal: CurrentUser,
    ctx: ContextDep,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> JobList:
    """Newest first, with the live progress of each running job (as its own GET shows it)."""
    return await verification_jobs.list_jobs(ctx, principal, status, limit, offset)


@router.get("/{job_id}", response_model=JobView, responses=error_responses(401, 404, 422))
async def get_job(
    job_id: Annotated[str, FastApiPath(max_length=64)],
    principal: CurrentUser,
    ctx: ContextDep,
) -> JobView:
    """The job with its live progress while it runs, and its result when done."""
    return await verification_jobs.get(ctx, principal, job_id)
