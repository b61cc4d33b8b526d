"""Content verification through the API, on anvil's ContentRegistry and the sandbox IPFS
gateway: each verdict from real signatures, real registrations and real gateway answers; the
upload limits; listing and stats; the ``wait`` path; the inline fallback with Temporal down."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from api.app import create_app
from domain.content import (
    ProofBundle,
    build_manifest,
    check_bundle,
    content_hash,
    ipfs_uri,
    manifest_bytes,
    register_calldata,
)
from providers.evm import LocalSigner
from providers.ipfs import IpfsGateway
from sandbox.chain import _send
from sandbox.content import SANDBOX_CREATOR_KEY, Published, publish
from sandbox.serve import serve
from store.models import VerificationJob
from tests.fixtures.stack import Stack, eventually, unique_tenant

#: anvil's account #6: signs manifests that claim to be account #4's
FORGER_KEY = "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e"
BASE = "/api/verification-jobs"


def document() -> bytes:
    return f"diploma {uuid.uuid4()} for Ada Lovelace\n".encode() * 40


def gateway(stack: Stack) -> IpfsGateway:
    return IpfsGateway(stack.ipfs.url, timeout_seconds=5, max_bytes=1024 * 1024)


async def published(stack: Stack, data: bytes, *, register: bool = True) -> Published:
    ipfs = gateway(stack)
    try:
        return await publish(
            stack.chain.client,
            ipfs,
            stack.settings.content_registry_address,
            SANDBOX_CREATOR_KEY,
            data,
            register=register,
        )
    finally:
        await ipfs.aclose()


async def submit(
    stack: Stack,
    headers: dict[str, str],
    data: bytes,
    manifest_uri: str,
    *,
    kind: str = "verify",
    wait: float | None = None,
    api: httpx.AsyncClient | None = None,
) -> httpx.Response:
    params = {"wait": str(wait)} if wait is not None else {}
    return await (api or stack.api).post(
        f"{BASE}/{kind}",
        params=params,
        files={"file": ("diploma.pdf", data, "application/pdf")},
        data={
            "registryAddress": stack.settings.content_registry_address,
            "manifestURI": manifest_uri,
        },
        headers=headers,
    )


async def finished(stack: Stack, job_id: str, headers: dict[str, str]) -> dict[str, Any]:
    response = await eventually(
        lambda: stack.api.get(f"{BASE}/{job_id}", headers=headers),
        lambda r: r.status_code == 200 and r.json()["status"] in ("completed", "failed"),
        timeout=30,
        what=f"verification job {job_id} to finish",
    )
    return dict(response.json())


async def verified(
    stack: Stack, headers: dict[str, str], data: bytes, manifest_uri: str, kind: str = "verify"
) -> dict[str, Any]:
    response = await submit(stack, headers, data, manifest_uri, kind=kind)
    assert response.status_code == 202, response.text
    return await finished(stack, response.json()["jobId"], headers)


def uploads_left(stack: Stack) -> list[Path]:
    return list(Path(stack.settings.verification_upload_dir).iterdir())


async def test_a_valid_file_passes_every_check(stack: Stack) -> None:
    headers = stack.auth("verifier", unique_tenant())
    data = document()
    content = await published(stack, data)
    response = await submit(stack, headers, data, content.manifest_uri)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["mode"] == "async" and accepted["status"] == "queued"
    assert accepted["pollUrl"] == f"{BASE}/{accepted['jobId']}" and accepted["message"]
    job = await finished(stack, accepted["jobId"], headers)
    assert job["status"] == "completed" and job["progress"] == 100 and job["type"] == "verify"
    assert job["id"] == job["jobId"] == accepted["jobId"]
    assert job["contentHash"] == content_hash(data) == content.content_hash
    assert job["manifestUri"] == content.manifest_uri and job["completedAt"]
    result = job["result"]
    assert result["status"] == "verified" and result["reasons"] == []
    assert result["checks"] == {"manifestHashOk": True, "creatorOk": True, "manifestOk": True}
    assert result["fileHash"] == content.content_hash
    assert result["recovered"] == LocalSigner(SANDBOX_CREATOR_KEY).address
    assert result["onchain"]["registered"] is True
    assert result["onchain"]["creator"] == result["recovered"]
    assert result["onchain"]["blockNumber"] == content.block
    assert uploads_left(stack) == []  # hashed, then deleted
    # the row is written by the workflow's last step, an instant before the workflow closes
    workflow = await eventually(
        lambda: stack.api.get(f"/api/v1/jobs/verification-{job['jobId']}", headers=headers),
        lambda r: r.json()["status"] != "running",
        timeout=15,
        what="the verification workflow to close",
    )
    assert workflow.json()["kind"] == "verification"
    assert workflow.json()["status"] == "succeeded"


async def test_a_tampered_file_fails_the_hash_check(stack: Stack) -> None:
    headers = stack.auth("verifier", unique_tenant())
    data = document()
    content = await published(stack, data)
    tampered = data.replace(b"Ada", b"Eve", 1)
    job = await verified(stack, headers, tampered, content.manifest_uri)
    assert job["status"] == "completed"
    result = job["result"]
    assert result["status"] == "failed" and result["fileHash"] == content_hash(tampered)
    assert result["checks"]["manifestHashOk"] is False
    assert result["checks"]["manifestOk"] is True  # the manifest itself is genuine
    assert result["onchain"]["registered"] is False  # nobody registered the tampered bytes
    assert any("hashes to" in reason for reason in result["reasons"])


async def test_a_manifest_signed_by_another_key_fails(stack: Stack) -> None:
    headers = stack.auth("verifier", unique_tenant())
    data = document()
    digest = content_hash(data)
    creator = LocalSigner(SANDBOX_CREATOR_KEY).address
    forged = build_manifest(FORGER_KEY, digest, "ipfs://bafyfile", datetime.now(UTC)).model_copy(
        update={"creator": creator}
    )
    ipfs = gateway(stack)
    try:
        manifest_uri = ipfs_uri(await ipfs.add(manifest_bytes(forged), name="manifest.json"))
    finally:
        await ipfs.aclose()
    await _send(
        stack.chain.client,
        LocalSigner(SANDBOX_CREATOR_KEY),
        {
            "to": stack.settings.content_registry_address,
            "data": register_calldata(digest, manifest_uri),
        },
    )
    job = await verified(stack, headers, data, manifest_uri)
    result = job["result"]
    assert job["status"] == "completed" and result["status"] == "failed"
    assert result["recovered"] == LocalSigner(FORGER_KEY).address
    assert result["checks"] == {"manifestHashOk": True, "creatorOk": False, "manifestOk": False}


async def test_an_unregistered_hash_fails_creator_ok(stack: Stack) -> None:
    headers = stack.auth("verifier", unique_tenant())
    data = document()
    content = await published(stack, data, register=False)
    job = await verified(stack, headers, data, content.manifest_uri)
    result = job["result"]
    assert result["status"] == "failed" and result["onchain"]["registered"] is False
    assert result["checks"] == {"manifestHashOk": True, "creatorOk": False, "manifestOk": True}
    assert any("not registered" in reason for reason in result["reasons"])


async def test_a_missing_manifest_fails_the_job_with_the_reason(stack: Stack) -> None:
    headers = stack.auth("verifier", unique_tenant())
    data = document()
    content = await published(stack, data)
    (stack.ipfs_dir / content.manifest_uri.removeprefix("ipfs://")).unlink()
    job = await verified(stack, headers, data, content.manifest_uri)
    assert job["status"] == "failed" and job["progress"] == 100
    assert "IpfsNotFound" in job["error"] and "404" in job["error"]
    assert job["result"]["checks"]["manifestOk"] is False
    assert job["result"]["onchain"]["registered"] is True  # the registry was still read
    assert uploads_left(stack) == []


async def test_a_proof_bundle_checks_offline(stack: Stack) -> None:
    headers = stack.auth("verifier", unique_tenant())
    data = document()
    content = await published(stack, data)
    job = await verified(stack, headers, data, content.manifest_uri, kind="proof")
    assert job["type"] == "proof" and job["result"]["status"] == "verified"
    bundle = ProofBundle.model_validate(job["result"]["proof"])
    assert bundle.transaction.hash == content.tx_hash
    assert bundle.block.number == content.block
    checks = check_bundle(bundle, data)
    assert checks["all"], checks
    assert not check_bundle(bundle, data + b"!")["all"]
    workflow = await stack.api.get(f"/api/v1/jobs/verification-{job['jobId']}", headers=headers)
    assert workflow.json()["kind"] == "proof"


async def test_wait_answers_with_the_result(stack: Stack) -> None:
    headers = stack.auth("verifier", unique_tenant())
    data = document()
    content = await published(stack, data)
    response = await submit(stack, headers, data, content.manifest_uri, wait=20)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mode"] == "sync" and body["status"] == "completed"
    assert body["result"]["status"] == "verified" and body["jobId"]
    too_long = await submit(stack, headers, data, content.manifest_uri, wait=3600)
    assert too_long.status_code == 422 and too_long.json()["error"]["field"] == "wait"


async def test_bad_uploads_are_refused_and_leave_nothing(stack: Stack) -> None:
    tenant = unique_tenant()
    headers = stack.auth("verifier", tenant)
    good_uri = ipfs_uri("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku")
    oversize = await submit(stack, headers, b"x" * (256 * 1024 + 1), good_uri)
    assert oversize.status_code == 413, oversize.text
    assert oversize.json()["error"]["field"] == "file"
    assert "262144 bytes" in oversize.json()["error"]["message"]
    cases: list[tuple[dict[str, Any], dict[str, str], str]] = [
        ({"file": ("a.txt", b"abc")}, {"manifestURI": "https://example.com/m.json"}, "manifestURI"),
        ({"file": ("a.txt", b"abc")}, {"manifestURI": "ipfs://not-a-cid"}, "manifestURI"),
        ({"file": ("a.txt", b"abc")}, {}, "manifestURI"),
        (
            {"file": ("a.txt", b"abc")},
            {"manifestURI": good_uri, "registryAddress": "0x1234"},
            "registryAddress",
        ),
        (
            {"file": ("a.txt", b"abc")},
            {
                "manifestURI": good_uri,
                "registryAddress": "0x057Ef64E23666F000b34aE31332854aCBd1c8544",
            },
            "registryAddress",
        ),
        ({"file": ("a.txt", b"")}, {"manifestURI": good_uri}, "file"),
        ({}, {"manifestURI": good_uri}, "file"),
    ]
    for files, data, field in cases:
        response = await stack.api.post(
            f"{BASE}/verify", files=files or None, data=data, headers=headers
        )
        assert response.status_code == 422, (data, response.text)
        assert response.json()["error"]["field"] == field, response.text
    as_json = await stack.api.post(
        f"{BASE}/verify", json={"manifestURI": good_uri}, headers=headers
    )
    assert as_json.status_code == 422
    unauthenticated = await submit(stack, {}, b"abc", good_uri)
    assert unauthenticated.status_code == 401
    async with stack.sessions() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(VerificationJob)
            .where(VerificationJob.tenant == tenant)
        )
    assert count == 0 and uploads_left(stack) == []


async def test_listing_filters_paginates_and_scopes(stack: Stack) -> None:
    tenant = unique_tenant()
    alice, bob = stack.auth("alice", tenant), stack.auth("bob", tenant)
    data = document()
    content = await published(stack, data)
    missing = await published(stack, document())
    (stack.ipfs_dir / missing.manifest_uri.removeprefix("ipfs://")).unlink()
    jobs = [
        await verified(stack, alice, data, content.manifest_uri),
        await verified(stack, alice, data, content.manifest_uri),
        await verified(stack, alice, data, missing.manifest_uri),
    ]
    assert [j["status"] for j in jobs] == ["completed", "completed", "failed"]
    first = (await stack.api.get(BASE, params={"limit": 2}, headers=alice)).json()
    second = (await stack.api.get(BASE, params={"limit": 2, "offset": 2}, headers=alice)).json()
    assert first["total"] == second["total"] == 3 and (first["limit"], second["offset"]) == (2, 2)
    listed = [j["jobId"] for j in first["jobs"] + second["jobs"]]
    assert listed == [j["jobId"] for j in reversed(jobs)]  # newest first
    failed = (await stack.api.get(BASE, params={"status": "failed"}, headers=alice)).json()
    assert [j["jobId"] for j in failed["jobs"]] == [jobs[2]["jobId"]]
    assert (await stack.api.get(BASE, headers=bob)).json()["total"] == 0
    assert (await stack.api.get(f"{BASE}/{jobs[0]['jobId']}", headers=bob)).status_code == 404
    unknown = await stack.api.get(f"{BASE}/{uuid.uuid4().hex}", headers=alice)
    assert unknown.status_code == 404 and unknown.json()["error"]["field"] == "jobId"
    # a tenant's admin sees the tenant's jobs, another tenant's admin none of them (it listed
    # them all before the roles were split); the platform's operator sees every tenant's
    ours = stack.auth("ops", tenant, roles=("admin",))
    listed = (await stack.api.get(BASE, params={"limit": 100}, headers=ours)).json()
    assert {j["jobId"] for j in listed["jobs"]} == {j["jobId"] for j in jobs}
    assert (await stack.api.get(f"{BASE}/{jobs[0]['jobId']}", headers=ours)).status_code == 200
    other_admin = stack.auth("ops", unique_tenant(), roles=("admin",))
    theirs = (await stack.api.get(BASE, params={"limit": 100}, headers=other_admin)).json()
    assert theirs["total"] == 0 and theirs["jobs"] == []
    assert (await stack.api.get(f"{BASE}/stats", headers=other_admin)).json()["completed"] == 0
    foreign = await stack.api.get(f"{BASE}/{jobs[0]['jobId']}", headers=other_admin)
    assert foreign.status_code == 404
    platform = stack.auth("root", unique_tenant(), roles=("platform_admin",))
    everyone = (await stack.api.get(BASE, params={"limit": 100}, headers=platform)).json()
    assert {j["jobId"] for j in jobs} <= {j["jobId"] for j in everyone["jobs"]}
    bad = await stack.api.get(BASE, params={"status": "done"}, headers=alice)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "status"
    stats = (await stack.api.get(f"{BASE}/stats", headers=alice)).json()
    assert stats == {"available": True, "waiting": 0, "active": 0, "completed": 2, "failed": 1}
    assert (await stack.api.get(f"{BASE}/stats", headers=bob)).json()["completed"] == 0


@pytest.mark.parametrize("fallback", [True, False], ids=["inline", "no-fallback"])
async def test_temporal_down_runs_inline_or_refuses(stack: Stack, fallback: bool) -> None:
    tenant = unique_tenant()
    headers = stack.auth("verifier", tenant)
    data = document()
    content = await published(stack, data)
    settings = stack.settings.model_copy(
        update={"temporal_address": "127.0.0.1:9", "verification_inline_fallback": fallback}
    )
    server = await serve(create_app(settings))
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as api:
            response = await submit(stack, headers, data, content.manifest_uri, api=api)
            if fallback:
                assert response.status_code == 200, response.text
                body = response.json()
                assert body["mode"] == "sync" and body["status"] == "completed"
                assert body["result"]["status"] == "verified"
                assert body["result"]["checks"] == {
                    "manifestHashOk": True,
                    "creatorOk": True,
                    "manifestOk": True,
                }
                stats = (await api.get(f"{BASE}/stats", headers=headers)).json()
                assert stats["available"] is False and stats["completed"] == 1
            else:
                assert response.status_code == 503, response.text
    finally:
        await server.stop()
    async with stack.sessions() as session:
        rows = (
            (await session.execute(select(VerificationJob).where(VerificationJob.tenant == tenant)))
            .scalars()
            .all()
        )
    if fallback:
        assert [(r.mode, r.status, r.content_hash) for r in rows] == [
            ("sync", "completed", content.content_hash)
        ]
    else:
        assert rows == []
    assert uploads_left(stack) == []


async def test_a_registry_address_without_a_contract_fails_the_job(stack: Stack) -> None:
    headers = stack.auth("verifier", unique_tenant())
    data = document()
    content = await published(stack, data)
    response = await stack.api.post(
        f"{BASE}/verify",
        files={"file": ("diploma.pdf", data)},
        data={
            "registryAddress": "0x" + "5a" * 20,  # an address nothing was deployed to
            "manifestURI": content.manifest_uri,
        },
        headers=headers,
    )
    assert response.status_code == 202, response.text
    job = await finished(stack, response.json()["jobId"], headers)
    assert job["status"] == "failed" and "RegistryNotFound" in job["error"]
    assert uploads_left(stack) == []


async def test_inline_with_the_chain_unreachable_keeps_nothing(stack: Stack) -> None:
    tenant = unique_tenant()
    headers = stack.auth("verifier", tenant)
    data = document()
    content = await published(stack, data)
    settings = stack.settings.model_copy(
        update={"temporal_address": "127.0.0.1:9", "evm_rpc_url": "http://127.0.0.1:9"}
    )
    server = await serve(create_app(settings))
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as api:
            response = await submit(stack, headers, data, content.manifest_uri, api=api)
    finally:
        await server.stop()
    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "evm_error"
    async with stack.sessions() as session:
        kept = await session.scalar(
            select(func.count())
            .select_from(VerificationJob)
            .where(VerificationJob.tenant == tenant)
        )
    assert kept == 0 and uploads_left(stack) == []


class RefusingTemporal:
    """A Temporal client whose server answers, but refuses to start the workflow."""

    async def start_workflow(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the server refused the start")


async def test_a_refused_start_keeps_neither_row_nor_upload(stack: Stack) -> None:
    tenant = unique_tenant()
    headers = stack.auth("verifier", tenant)
    data = document()
    content = await published(stack, data)
    server = await serve(create_app(stack.settings, temporal=RefusingTemporal()))  # type: ignore[arg-type]
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as api:
            response = await submit(stack, headers, data, content.manifest_uri, api=api)
    finally:
        await server.stop()
    assert response.status_code == 500
    async with stack.sessions() as session:
        kept = await session.scalar(
            select(func.count())
            .select_from(VerificationJob)
            .where(VerificationJob.tenant == tenant)
        )
    assert kept == 0 and uploads_left(stack) == []
