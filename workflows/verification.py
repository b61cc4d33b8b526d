"""``Verification`` and ``Proof`` (``verification-<job_id>``): check an uploaded file against its
IPFS manifest, the manifest's signer and the ContentRegistry.

Steps, with the progress the ``status`` query reports after each: hash the upload (10), fetch the
manifest (30, recorded in the job's row too, so a reader sees it), compare the hashes (50),
recover the signer (70), read the registry (90), record the outcome (100). ``Proof`` then adds
the bundle a third party checks offline. A manifest that cannot be had (gateway 404, too large,
not the documented JSON) or a registry address without a contract fails the job with the reason;
any other mismatch completes it with ``status: failed`` and the checks that did not hold. The
upload is deleted once hashed, or by a last step when the job ends before hashing it.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

from domain.content import RegistryEntry
from domain.events import EventType
from domain.queues import ActivityQueue
from domain.search import OperationStatus
from domain.verification import (
    PROGRESS_DONE,
    PROGRESS_HASH_CHECKED,
    PROGRESS_HASHED,
    PROGRESS_MANIFEST,
    PROGRESS_REGISTRY,
    PROGRESS_SIGNER,
    FetchedManifest,
    FileDigest,
    JobStatus,
    JobUpdate,
    ProofRequest,
    RegistryRead,
    VerificationInput,
    VerificationKind,
    VerificationResult,
    VerificationState,
    evaluate,
    unreadable_manifest,
)
from workflows import policies
from workflows.bookkeeping import db_step
from workflows.dead_letter import StepVisibility, set_status
from workflows.events import emit
from workflows.failures import cause_message, reraise_if_cancelled
from workflows.refs import add_refs

with workflow.unsafe.imports_passed_through():
    from activities.verification import VerificationActivities

#: the job's end is pushed to the tenant's endpoints and the request's callback_url
EVENTS_PATCH = "verification-events"

STEP_TIMEOUT = timedelta(seconds=60)


async def _record(request: VerificationInput, update: JobUpdate) -> None:
    await db_step(VerificationActivities.record, update, queue=request.queue(ActivityQueue.DB))


class _Job:
    """One verification's steps and the state its ``status`` query shows."""

    def __init__(self) -> None:
        self.state = VerificationState()

    def _at(self, progress: int, step: str) -> None:
        self.state.progress, self.state.step = progress, step

    async def _hash(self, request: VerificationInput) -> FileDigest:
        try:
            return await workflow.execute_activity_method(
                VerificationActivities.hash_upload,
                request.upload,
                task_queue=request.queue(ActivityQueue.VERIFICATION),
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=policies.HASH_UPLOAD,
            )
        except BaseException:
            await asyncio.shield(
                workflow.execute_activity_method(
                    VerificationActivities.discard_upload,
                    request.upload,
                    task_queue=request.queue(ActivityQueue.VERIFICATION),
                    start_to_close_timeout=STEP_TIMEOUT,
                    retry_policy=policies.HASH_UPLOAD,
                )
            )
            raise

    async def _registry(
        self, request: VerificationInput, content_hash: str
    ) -> RegistryEntry | None:
        return await workflow.execute_activity_method(
            VerificationActivities.read_registry,
            RegistryRead(registry=request.registry, content_hash=content_hash),
            task_queue=request.queue(ActivityQueue.EVM_READ),
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=policies.VERIFICATION_READ,
        )

    async def _manifest(self, request: VerificationInput) -> FetchedManifest:
        return await workflow.execute_activity_method(
            VerificationActivities.fetch_manifest,
            request.manifest_uri,
            task_queue=request.queue(ActivityQueue.IPFS),
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=policies.VERIFICATION_READ,
        )

    async def _checked(self, request: VerificationInput, file_hash: str) -> VerificationResult:
        """Manifest, signer and registry, in that order; raises only when the job must fail."""
        try:
            fetched = await self._manifest(request)
        except ActivityError as err:
            reraise_if_cancelled(err)
            reason = cause_message(err)
            entry = await self._registry(request, file_hash)
            self._at(PROGRESS_REGISTRY, "registry read")
            self.state.result = unreadable_manifest(
                registry=request.registry,
                file_hash=file_hash,
                entry=entry,
                manifest_uri=request.manifest_uri,
                reason=reason,
            )
            raise
        self._at(PROGRESS_MANIFEST, "manifest fetched")
        if workflow.patched("verification-record-manifest-progress"):
            # comparing the hashes takes no activity, so without this record 30 would be gone
            # before any reader could see it; the row then shows it too
            await _record(
                request,
                JobUpdate(
                    job_id=request.job_id,
                    status=JobStatus.ACTIVE,
                    progress=PROGRESS_MANIFEST,
                    content_hash=file_hash,
                ),
            )
        self._at(PROGRESS_HASH_CHECKED, "hash checked")
        recovered = await workflow.execute_activity_method(
            VerificationActivities.recover_signer,
            fetched,
            task_queue=request.queue(ActivityQueue.VERIFICATION),
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=policies.HASH_UPLOAD,
        )
        self._at(PROGRESS_SIGNER, "signer recovered")
        entry = await self._registry(request, file_hash)
        self._at(PROGRESS_REGISTRY, "registry read")
        result = evaluate(
            registry=request.registry,
            file_hash=file_hash,
            manifest=fetched.manifest,
            recovered=recovered,
            entry=entry,
            manifest_uri=request.manifest_uri,
        )
        if request.kind is VerificationKind.PROOF and entry is not None:
            result.proof = await workflow.execute_activity_method(
                VerificationActivities.proof_bundle,
                ProofRequest(
                    registry=request.registry,
                    entry=entry,
                    manifest_uri=request.manifest_uri,
                    fetched=fetched,
                ),
                task_queue=request.queue(ActivityQueue.EVM_READ),
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=policies.VERIFICATION_READ,
            )
        return result

    async def run(self, request: VerificationInput) -> VerificationState:
        self.state.status = JobStatus.ACTIVE
        self._at(0, "started")
        await _record(
            request,
            JobUpdate(job_id=request.job_id, status=JobStatus.ACTIVE, progress=0, started=True),
        )
        outcome = JobStatus.COMPLETED
        try:
            digest = await self._hash(request)
            self.state.content_hash = digest.content_hash
            add_refs(digest.content_hash)
            self._at(PROGRESS_HASHED, "file hashed")
            self.state.result = await self._checked(request, digest.content_hash)
        except ActivityError as err:
            reraise_if_cancelled(err)
            outcome, self.state.error = JobStatus.FAILED, cause_message(err)
        await _record(
            request,
            JobUpdate(
                job_id=request.job_id,
                status=outcome,
                progress=PROGRESS_DONE,
                content_hash=self.state.content_hash,
                result=self.state.result,
                error=self.state.error,
            ),
        )
        # final only once recorded: a reader that sees "completed" finds the result in the row
        self.state.status = outcome
        self._at(PROGRESS_DONE, "done")
        # a file that fails its checks is a verification that worked: only a job that could not
        # be carried out counts as a failed operation (and towards the failure-rate alert)
        completed = self.state.status is JobStatus.COMPLETED
        set_status(OperationStatus.SUCCEEDED if completed else OperationStatus.FAILED)
        if request.tenant is not None and workflow.patched(EVENTS_PATCH):
            await emit(
                request,
                request.tenant,
                EventType.VERIFICATION_COMPLETED,
                request.job_id,
                {
                    "job_id": request.job_id,
                    "kind": request.kind.value,
                    "status": outcome.value,
                    "content_hash": self.state.content_hash,
                    "error": self.state.error,
                },
                callbacks=request.callback_endpoint_ids,
            )
        return self.state


@workflow.defn(name="Verification")
class Verification(StepVisibility):
    def __init__(self) -> None:
        self._job = _Job()

    @workflow.query
    def status(self) -> VerificationState:
        return self._job.state

    @workflow.run
    async def run(self, request: VerificationInput) -> VerificationState:
        return await self._job.run(request)


@workflow.defn(name="Proof")
class Proof(StepVisibility):
    """``Verification`` plus the bundle (registry entry, transaction, block, signature, manifest)
    a third party can check offline."""

    def __init__(self) -> None:
        self._job = _Job()

    @workflow.query
    def status(self) -> VerificationState:
        return self._job.state

    @workflow.run
    async def run(self, request: VerificationInput) -> VerificationState:
        return await self._job.run(request)
