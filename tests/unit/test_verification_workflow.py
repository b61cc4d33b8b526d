"""Verification on the time-skipping server with stand-in activities: the progress its query
reports step by step, the verdicts, and the failures that end a job with their reason.

``python -m tests.unit.test_verification_workflow`` records the histories replayed by
tests/unit/test_replay.py (tests/histories/verification/); never re-record an existing file.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from domain.content import Manifest, RegistryEntry, build_manifest, content_hash, recover_signer
from domain.queues import ActivityQueue
from domain.verification import (
    FetchedManifest,
    FileDigest,
    JobStatus,
    JobUpdate,
    ProofRequest,
    RegistryRead,
    VerificationInput,
    VerificationKind,
    VerificationState,
)
from tests.fixtures.temporal import new_prefix, running_workers, start_time_skipping
from workflows.verification import Verification

CREATOR_KEY = "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a"
OTHER_KEY = "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba"
REGISTRY = "0x057ef64E23666F000b34aE31332854aCBd1c8544"
MANIFEST_URI = "ipfs://bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
FILE = b"the diploma of Ada"
FILE_HASH = content_hash(FILE)


def manifest(key: str = CREATOR_KEY, **changes: Any) -> Manifest:
    signed = build_manifest(key, FILE_HASH, "ipfs://bafyfile", datetime(2026, 11, 25, tzinfo=UTC))
    return signed.model_copy(update=changes)


def entry(creator: str) -> RegistryEntry:
    return RegistryEntry(
        contentHash=FILE_HASH,
        creator=creator,
        manifestURI=MANIFEST_URI,
        registeredAt=1_764_000_000,
        blockNumber=42,
    )


@dataclass
class Fakes:
    client: Client
    manifest: Manifest | None = field(default_factory=manifest)
    fetch_error: ApplicationError | None = None
    hash_error: ApplicationError | None = None
    entry: RegistryEntry | None = None
    #: (step, the workflow's progress when the step began)
    seen: list[tuple[str, int]] = field(default_factory=list)
    records: list[JobUpdate] = field(default_factory=list)
    #: raised by the job-row writes, one per call, before any row is written
    record_errors: list[ApplicationError] = field(default_factory=list)
    #: whether each job-row write ran as a local activity (True) or a regular one (False)
    record_calls: list[bool] = field(default_factory=list)
    discarded: list[str] = field(default_factory=list)

    async def progress(self, step: str) -> None:
        if activity.info().is_local:
            # a local activity runs inside the workflow's task: a query would wait for it
            return
        workflow_id = activity.info().workflow_id
        assert workflow_id is not None
        handle = self.client.get_workflow_handle(workflow_id)
        state = await handle.query(Verification.status)
        self.seen.append((step, state.progress))

    def activities(self) -> dict[ActivityQueue, list[Any]]:
        fake = self

        @activity.defn(name="verification.hash_upload")
        async def hash_upload(name: str) -> FileDigest:
            await fake.progress("hash")
            if fake.hash_error:
                raise fake.hash_error
            return FileDigest(content_hash=FILE_HASH, size=len(FILE))

        @activity.defn(name="verification.discard_upload")
        async def discard_upload(name: str) -> None:
            fake.discarded.append(name)

        @activity.defn(name="verification.fetch_manifest")
        async def fetch_manifest(uri: str) -> FetchedManifest:
            await fake.progress("manifest")
            if fake.fetch_error or fake.manifest is None:
                raise fake.fetch_error or ApplicationError("no manifest", non_retryable=True)
            return FetchedManifest(raw=fake.manifest.model_dump_json(), manifest=fake.manifest)

        @activity.defn(name="verification.recover_signer")
        async def recover(fetched: FetchedManifest) -> str | None:
            await fake.progress("signer")
            return recover_signer(fetched.manifest.contentHash, fetched.manifest.signature)

        @activity.defn(name="verification.read_registry")
        async def read_registry(request: RegistryRead) -> RegistryEntry | None:
            await fake.progress("registry")
            return fake.entry

        @activity.defn(name="verification.proof_bundle")
        async def proof_bundle(request: ProofRequest) -> None:
            raise AssertionError("a Verification never builds a bundle")

        @activity.defn(name="verification.record")
        async def record(update: JobUpdate) -> None:
            fake.record_calls.append(activity.info().is_local)
            await fake.progress(f"record:{update.status.value}")
            if fake.record_errors:
                raise fake.record_errors.pop(0)
            fake.records.append(update)

        return {
            ActivityQueue.VERIFICATION: [hash_upload, discard_upload, recover],
            ActivityQueue.IPFS: [fetch_manifest],
            ActivityQueue.EVM_READ: [read_registry, proof_bundle],
            ActivityQueue.DB: [record],
        }


@pytest.fixture
def env(time_skipping_env: WorkflowEnvironment) -> WorkflowEnvironment:
    return time_skipping_env


async def run(
    env: WorkflowEnvironment, fakes: Fakes, job_id: str | None = None, tenant: str | None = None
) -> VerificationState:
    prefix = new_prefix()
    async with running_workers(
        env.client, prefix, workflows=[Verification], activities=fakes.activities()
    ):
        job_id = job_id or uuid.uuid4().hex
        return await env.client.execute_workflow(
            Verification.run,
            VerificationInput(
                job_id=job_id,
                kind=VerificationKind.VERIFY,
                upload=f"{job_id}.upload",
                registry=REGISTRY,
                manifest_uri=MANIFEST_URI,
                task_queue_prefix=prefix,
                tenant=tenant,
                callback_endpoint_ids=["cb-1"] if tenant else [],
            ),
            id=f"verification-{job_id}",
            task_queue=f"{prefix}workflows",
        )


def database_down() -> ApplicationError:
    return ApplicationError("connection refused", type="ConnectionRefusedError")


def creator() -> str:
    return manifest().creator


async def test_progress_goes_10_30_50_70_90_100_and_every_check_holds(
    env: WorkflowEnvironment,
) -> None:
    fakes = Fakes(env.client, entry=entry(creator()))
    state = await run(env, fakes)
    # the job rows (local activities, run inside the workflow's task) are asserted below
    assert fakes.seen == [("hash", 0), ("manifest", 10), ("signer", 50), ("registry", 70)]
    assert state.progress == 100 and state.status == JobStatus.COMPLETED
    assert state.result is not None and state.result.status == "verified"
    assert state.result.checks.model_dump() == {
        "manifestHashOk": True,
        "creatorOk": True,
        "manifestOk": True,
    }
    assert state.result.recovered == creator() and state.result.reasons == []
    assert [(r.status, r.progress) for r in fakes.records] == [
        (JobStatus.ACTIVE, 0),
        (JobStatus.ACTIVE, 30),
        (JobStatus.COMPLETED, 100),
    ]
    assert fakes.records[-1].content_hash == FILE_HASH


async def test_a_signature_by_another_key_fails_the_signer_checks(env: WorkflowEnvironment) -> None:
    forged = manifest(OTHER_KEY, creator=creator())  # claims the creator, signed by another key
    fakes = Fakes(env.client, manifest=forged, entry=entry(creator()))
    state = await run(env, fakes)
    assert state.status == JobStatus.COMPLETED and state.result is not None
    assert state.result.status == "failed"
    assert state.result.checks.model_dump() == {
        "manifestHashOk": True,
        "creatorOk": False,
        "manifestOk": False,
    }
    assert any("signed by" in reason for reason in state.result.reasons)


async def test_an_unregistered_hash_fails_creator_ok(env: WorkflowEnvironment) -> None:
    fakes = Fakes(env.client, entry=None)
    state = await run(env, fakes)
    assert state.result is not None and state.result.status == "failed"
    assert state.result.onchain is not None and state.result.onchain.registered is False
    assert state.result.checks.creatorOk is False and state.result.checks.manifestOk is True
    assert any("not registered" in reason for reason in state.result.reasons)


async def test_a_missing_manifest_fails_the_job_with_the_reason(env: WorkflowEnvironment) -> None:
    missing = ApplicationError(
        f"{MANIFEST_URI}: gateway 404", type="IpfsNotFound", non_retryable=True
    )
    fakes = Fakes(env.client, fetch_error=missing, entry=entry(creator()))
    state = await run(env, fakes)
    assert state.status == JobStatus.FAILED and state.progress == 100
    assert state.error is not None and "IpfsNotFound" in state.error and "404" in state.error
    assert state.result is not None and state.result.checks.manifestOk is False
    assert state.result.onchain is not None and state.result.onchain.registered
    final = fakes.records[-1]
    assert final.status == JobStatus.FAILED and final.error == state.error
    assert [step for step, _ in fakes.seen].count("manifest") == 1  # a 404 is not retried


async def test_an_upload_that_cannot_be_hashed_fails_and_is_discarded(
    env: WorkflowEnvironment,
) -> None:
    gone = ApplicationError("upload is not there", type="UploadMissing", non_retryable=True)
    fakes = Fakes(env.client, hash_error=gone)
    state = await run(env, fakes)
    assert state.status == JobStatus.FAILED and "UploadMissing" in (state.error or "")
    assert len(fakes.discarded) == 1 and fakes.discarded[0].endswith(".upload")
    assert "manifest" not in [step for step, _ in fakes.seen]


HISTORIES = Path(__file__).resolve().parents[1] / "histories" / "verification"


async def _record() -> None:
    """A verified job and a job whose manifest is missing (v1), a verified job that records
    the manifest's progress (v2, ``verification-record-manifest-progress``), and one that pushes
    its end (v3, ``verification-events``). Only missing files are recorded: an existing history
    is the shape running executions have."""
    env = await start_time_skipping()
    missing = ApplicationError(
        f"{MANIFEST_URI}: gateway 404", type="IpfsNotFound", non_retryable=True
    )
    async with env:
        HISTORIES.mkdir(parents=True, exist_ok=True)
        for name, fakes in (
            ("v1_verified", Fakes(env.client, entry=entry(creator()))),
            ("v1_manifest_missing", Fakes(env.client, fetch_error=missing, entry=entry(creator()))),
            ("v2_verified_manifest_recorded", Fakes(env.client, entry=entry(creator()))),
            # v3: the end pushed to the tenant and the callback ("verification-events")
            ("v3_verified_event_emitted", Fakes(env.client, entry=entry(creator()))),
            # v4: job rows written by local activities ("bookkeeping-local-first"), the first
            # after its local attempts failed, as the regular activity
            (
                "v4_local_bookkeeping_one_fell_back",
                Fakes(
                    env.client,
                    entry=entry(creator()),
                    record_errors=[database_down() for _ in range(3)],
                ),
            ),
        ):
            path = HISTORIES / f"{name}.json"
            if path.exists():
                continue
            job_id = uuid.uuid4().hex
            await run(env, fakes, job_id, tenant="t1" if name.startswith("v3") else None)
            handle = env.client.get_workflow_handle(f"verification-{job_id}")
            history = await handle.fetch_history()
            path.write_text(history.to_json())
            print(f"wrote {path}")


if __name__ == "__main__":
    asyncio.run(_record())
