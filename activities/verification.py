"""Content verification's steps: hash the upload, fetch the manifest from IPFS, recover its
signer, read the ContentRegistry, build a proof bundle, keep the job's row.

Each step is one activity on the queue of the system it touches (``verification`` for the upload
folder, ``ipfs``, ``evm-read``, ``db``). The API's inline fallback (Temporal unreachable) calls
the same methods directly, in :func:`run_inline`, so both paths take the same steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.job_log import add_line
from domain.content import (
    ProofBundle,
    RegistryEntry,
    hash_file,
    parse_manifest,
    proof_bundle,
    recover_signer,
)
from domain.errors import InvalidManifest, IpfsError, RegistryNotFound
from domain.verification import (
    FetchedManifest,
    FileDigest,
    JobStatus,
    JobUpdate,
    ProofRequest,
    RegistryRead,
    VerificationInput,
    VerificationKind,
    VerificationResult,
    evaluate,
    unreadable_manifest,
)
from providers.evm import EvmClient
from providers.evm.content_registry import ContentRegistryReader
from providers.ipfs import IpfsGateway
from runtime.logging import get_logger
from store.models import VerificationJob

log = get_logger("activities.verification")


class UploadMissing(RuntimeError):
    """The upload is not in the upload folder (already hashed, or the folder is not shared)."""


def upload_path(upload_dir: Path, name: str) -> Path:
    """The upload's path, refusing any name that would leave the folder."""
    path = (upload_dir / name).resolve()
    if path.parent != upload_dir.resolve():
        raise ValueError(f"upload name {name!r} leaves the upload folder")
    return path


class VerificationActivities:
    def __init__(
        self,
        gateway: IpfsGateway,
        evm: EvmClient,
        sessions: async_sessionmaker[AsyncSession],
        upload_dir: Path,
    ) -> None:
        self._gateway, self._evm, self._sessions = gateway, evm, sessions
        self._upload_dir = upload_dir

    @activity.defn(name="verification.hash_upload")
    async def hash_upload(self, name: str) -> FileDigest:
        """keccak256 of the uploaded bytes; the upload is deleted once hashed (the hash is all a
        verification needs of it)."""
        return await asyncio.to_thread(self._hash_and_remove, name)

    def _hash_and_remove(self, name: str) -> FileDigest:
        """Off the event loop: hashing a large file would stall every other activity."""
        path = upload_path(self._upload_dir, name)
        if not path.exists():
            raise UploadMissing(
                f"upload {name} is not in {self._upload_dir}: the API and the workers of the "
                "verification queue must share VERIFICATION_UPLOAD_DIR"
            )
        size = path.stat().st_size
        digest = hash_file(path)
        path.unlink(missing_ok=True)
        return FileDigest(content_hash=digest, size=size)

    @activity.defn(name="verification.discard_upload")
    async def discard_upload(self, name: str) -> None:
        """Remove an upload a job will not hash (it failed or was cancelled first)."""
        with contextlib.suppress(ValueError):
            await asyncio.to_thread(upload_path(self._upload_dir, name).unlink, missing_ok=True)

    @activity.defn(name="verification.fetch_manifest")
    async def fetch_manifest(self, uri: str) -> FetchedManifest:
        """The manifest from the gateway: a 404, an oversize or unparsable manifest are permanent
        (``IpfsNotFound``, ``IpfsTooLarge``, ``InvalidManifest``); a gateway outage is retried."""
        raw = await self._gateway.fetch(uri)
        manifest = parse_manifest(raw)
        return FetchedManifest(raw=raw.decode("utf-8"), manifest=manifest)

    @activity.defn(name="verification.recover_signer")
    async def recover_signer(self, fetched: FetchedManifest) -> str | None:
        """The address whose EIP-191 signature the manifest carries (None when unrecoverable)."""
        manifest = fetched.manifest
        return recover_signer(manifest.contentHash, manifest.signature)

    @activity.defn(name="verification.read_registry")
    async def read_registry(self, request: RegistryRead) -> RegistryEntry | None:
        """The registry's entry for the hash; ``RegistryNotFound`` when the address has no code."""
        return await ContentRegistryReader(self._evm, request.registry).entry(request.content_hash)

    @activity.defn(name="verification.proof_bundle")
    async def proof_bundle(self, request: ProofRequest) -> ProofBundle:
        """The registration's transaction, log and block with the manifest and its signature:
        what a third party checks offline (``domain.content.check_bundle``)."""
        reader = ContentRegistryReader(self._evm, request.registry)
        registration = await reader.registration(request.entry)
        manifest = request.fetched.manifest
        return proof_bundle(
            self._evm.chain_id,
            request.registry,
            request.entry,
            registration,
            manifest.signature,
            manifest,
            request.fetched.raw,
        )

    @activity.defn(name="verification.record")
    async def record(self, update: JobUpdate) -> None:
        """The job's row: ``active`` when its workflow starts, then its outcome."""
        now = datetime.now(UTC)
        async with self._sessions.begin() as session:
            row = await session.get(VerificationJob, update.job_id)
            if row is None:
                raise RuntimeError(f"no verification job {update.job_id}")
            if row.status in (JobStatus.COMPLETED.value, JobStatus.FAILED.value):
                return  # a retried record after the outcome: the outcome stands
            row.status, row.progress = update.status.value, update.progress
            row.content_hash = update.content_hash or row.content_hash
            if update.started:
                row.started_at = row.started_at or now
            if update.result is not None:
                row.result = update.result.model_dump_json()
            row.error = update.error
            if update.status in (JobStatus.COMPLETED, JobStatus.FAILED):
                row.completed_at = now
            verdict = f", verdict {update.result.status.value}" if update.result else ""
            content = f", content hash {update.content_hash}" if update.content_hash else ""
            error = f": {update.error}" if update.error else ""
            add_line(
                session,
                f"job {update.status.value} ({update.progress}%){content}{verdict}{error}",
                level="warning" if update.status is JobStatus.FAILED else "info",
            )
        log.info(
            "verification job recorded",
            job_id=update.job_id,
            status=update.status.value,
            verdict=update.result.status.value if update.result else None,
        )


def result_json(result: VerificationResult | None) -> dict[str, object] | None:
    return json.loads(result.model_dump_json()) if result else None


async def run_inline(
    steps: VerificationActivities, request: VerificationInput
) -> tuple[JobStatus, VerificationResult | None, str | None]:
    """The ``Verification``/``Proof`` steps run in this process, for the API's fallback when
    Temporal cannot be reached: (status, result, error). The upload is always removed."""
    try:
        digest = await steps.hash_upload(request.upload)
    finally:
        await steps.discard_upload(request.upload)
    try:
        entry = await steps.read_registry(
            RegistryRead(registry=request.registry, content_hash=digest.content_hash)
        )
    except RegistryNotFound as exc:
        return JobStatus.FAILED, None, str(exc)
    try:
        fetched = await steps.fetch_manifest(request.manifest_uri)
    except (IpfsError, InvalidManifest) as exc:
        reason = str(exc)
        result = unreadable_manifest(
            registry=request.registry,
            file_hash=digest.content_hash,
            entry=entry,
            manifest_uri=request.manifest_uri,
            reason=reason,
        )
        return JobStatus.FAILED, result, reason
    recovered = await steps.recover_signer(fetched)
    result = evaluate(
        registry=request.registry,
        file_hash=digest.content_hash,
        manifest=fetched.manifest,
        recovered=recovered,
        entry=entry,
        manifest_uri=request.manifest_uri,
    )
    if request.kind is VerificationKind.PROOF and entry is not None:
        result.proof = await steps.proof_bundle(
            ProofRequest(
                registry=request.registry,
                entry=entry,
                manifest_uri=request.manifest_uri,
                fetched=fetched,
            )
        )
    return JobStatus.COMPLETED, result, None
