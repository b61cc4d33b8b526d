"""Content verification: a file checked against its manifest, its signer and the ContentRegistry.

The verdict is computed here, from what the steps found, so the ``Verification`` workflow and the
API's inline fallback (Temporal unreachable) can never disagree:

- ``manifestOk``: the manifest was fetched, is the documented JSON, and its signature recovers to
  the creator it names (it is authentic);
- ``manifestHashOk``: the manifest is about this file (its ``contentHash`` is the file's hash);
- ``creatorOk``: the file's hash is registered on chain, by the address that signed the manifest.

Every check true: ``verified``; else ``failed`` with the reasons.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

from domain.addresses import same_address
from domain.content import Manifest, ProofBundle, RegistryEntry
from domain.queues import Routed

#: the progress a job reports after each step (the Bull job's ``progress``)
PROGRESS_HASHED = 10
PROGRESS_MANIFEST = 30
PROGRESS_HASH_CHECKED = 50
PROGRESS_SIGNER = 70
PROGRESS_REGISTRY = 90
PROGRESS_DONE = 100


class VerificationKind(StrEnum):
    VERIFY = "verify"
    PROOF = "proof"


class JobStatus(StrEnum):
    QUEUED = "queued"
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"


FINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED})


class Verdict(StrEnum):
    VERIFIED = "verified"
    FAILED = "failed"


class Checks(BaseModel):
    manifestHashOk: bool = False
    creatorOk: bool = False
    manifestOk: bool = False


class OnChain(BaseModel):
    """What the registry holds for the file's hash (``registered: false`` when nothing)."""

    registry: str
    registered: bool
    creator: str | None = None
    manifestURI: str | None = None
    registeredAt: int | None = None
    blockNumber: int | None = None


class VerificationResult(BaseModel):
    status: Verdict
    fileHash: str | None
    recovered: str | None
    onchain: OnChain | None
    checks: Checks
    reasons: list[str] = Field(default_factory=list)
    #: ``Proof`` jobs: everything a third party needs to check the claim offline
    proof: ProofBundle | None = None


class FileDigest(BaseModel):
    content_hash: str
    size: int


class FetchedManifest(BaseModel):
    """The manifest's exact text and its parsed form."""

    raw: str
    manifest: Manifest


class VerificationInput(Routed):
    job_id: str
    kind: VerificationKind
    #: the upload's file name inside VERIFICATION_UPLOAD_DIR (shared by the API and the workers)
    upload: str
    registry: str
    manifest_uri: str
    #: whose endpoints hear of the job's end (jobs from before: nobody's)
    tenant: str | None = None
    #: the request's ``callback_url`` (a ``callback`` webhook endpoint)
    callback_endpoint_ids: list[str] = Field(default_factory=list)


class RegistryRead(BaseModel):
    registry: str
    content_hash: str


class ProofRequest(BaseModel):
    registry: str
    entry: RegistryEntry
    manifest_uri: str
    fetched: FetchedManifest


class JobUpdate(BaseModel):
    """A verification job's row, as the workflow moves it along."""

    job_id: str
    status: JobStatus
    progress: int
    content_hash: str | None = None
    result: VerificationResult | None = None
    error: str | None = None
    started: bool = False


class VerificationState(BaseModel):
    """The ``status`` query: where a job stands, while it runs."""

    status: JobStatus = JobStatus.QUEUED
    progress: int = 0
    step: str = "queued"
    content_hash: str | None = None
    result: VerificationResult | None = None
    error: str | None = None


def workflow_id_for(job_id: str) -> str:
    return f"verification-{job_id}"


def onchain_view(registry: str, entry: RegistryEntry | None) -> OnChain:
    if entry is None:
        return OnChain(registry=registry, registered=False)
    return OnChain(
        registry=registry,
        registered=True,
        creator=entry.creator,
        manifestURI=entry.manifestURI,
        registeredAt=entry.registeredAt,
        blockNumber=entry.blockNumber,
    )


def evaluate(
    *,
    registry: str,
    file_hash: str,
    manifest: Manifest | None,
    recovered: str | None,
    entry: RegistryEntry | None,
    manifest_uri: str,
    manifest_error: str | None = None,
) -> VerificationResult:
    """The verdict from the steps' findings (see the module docstring for each check)."""
    reasons: list[str] = []
    if manifest is None:
        reasons.append(manifest_error or f"the manifest at {manifest_uri} could not be read")
        manifest_ok = hash_ok = False
    else:
        manifest_ok = same_address(recovered, manifest.creator)
        if not manifest_ok:
            reasons.append(
                f"the manifest's signature recovers to {recovered or 'nobody'}, "
                f"not to its creator {manifest.creator}"
            )
        hash_ok = manifest.contentHash.lower() == file_hash.lower()
        if not hash_ok:
            reasons.append(
                f"the file hashes to {file_hash}, the manifest is for {manifest.contentHash}"
            )
    if entry is None:
        creator_ok = False
        reasons.append(f"the file's hash {file_hash} is not registered on {registry}")
    else:
        creator_ok = same_address(entry.creator, recovered)
        if not creator_ok:
            reasons.append(
                f"registered on chain by {entry.creator}, but the manifest was signed by "
                f"{recovered or 'nobody'}"
            )
        if entry.manifestURI != manifest_uri:
            reasons.append(
                f"the registry names the manifest {entry.manifestURI}, not {manifest_uri}"
            )
    checks = Checks(manifestHashOk=hash_ok, creatorOk=creator_ok, manifestOk=manifest_ok)
    every = checks.manifestHashOk and checks.creatorOk and checks.manifestOk
    return VerificationResult(
        status=Verdict.VERIFIED if every else Verdict.FAILED,
        fileHash=file_hash,
        recovered=recovered,
        onchain=onchain_view(registry, entry),
        checks=checks,
        reasons=reasons,
    )


def unreadable_manifest(
    *, registry: str, file_hash: str, entry: RegistryEntry | None, manifest_uri: str, reason: str
) -> VerificationResult:
    """The result of a job whose manifest could not be fetched or parsed (it fails with
    ``reason``), with what the registry says about the file all the same."""
    return evaluate(
        registry=registry,
        file_hash=file_hash,
        manifest=None,
        recovered=None,
        entry=entry,
        manifest_uri=manifest_uri,
        manifest_error=reason,
    )
