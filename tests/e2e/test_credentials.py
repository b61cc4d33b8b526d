"""Credential anchoring on the CredentialRegistry deployed on anvil, through the API and the
wallet writer: the anchor is read back from the chain, idempotent, refused when bad."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from eth_abi import decode, encode
from eth_utils import keccak
from sqlalchemy import func, select

from domain.credentials import credential_key, legacy_credential_key
from providers.evm import LocalSigner
from sandbox.chain import _send
from store.models import CredentialAnchorRecord, EvmTransaction
from tests.fixtures.stack import Stack, eventually, unique_tenant

CID_V1 = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
CID_V0 = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"


def data_hash() -> str:
    return "0x" + keccak(text=str(uuid.uuid4())).hex()


def url(credential_id: str) -> str:
    return f"/api/v1/credentials/{credential_id}/anchor"


async def settled(stack: Stack, credential_id: str, headers: dict[str, str]) -> dict[str, Any]:
    response = await eventually(
        lambda: stack.api.get(url(credential_id), headers=headers),
        lambda r: r.json().get("status") in ("confirmed", "failed"),
        timeout=60,
        what=f"the anchor of {credential_id} to settle",
    )
    return dict(response.json())


async def on_chain(stack: Stack, tenant: str, credential_id: str) -> tuple[str, str, int]:
    selector = keccak(text="credential(bytes32)")[:4]
    key = bytes.fromhex(credential_key(tenant, credential_id)[2:])
    raw = await stack.chain.client.call(
        stack.settings.credential_registry_address,
        "0x" + (selector + encode(["bytes32"], [key])).hex(),
    )
    digest, cid, _at, block = decode(
        ["bytes32", "string", "uint64", "uint64"], bytes.fromhex(raw[2:])
    )
    return "0x" + digest.hex(), cid, block


async def test_anchor_is_confirmed_and_readable_on_chain(stack: Stack) -> None:
    tenant = unique_tenant()
    headers = stack.auth("issuer", tenant)
    digest = data_hash()
    response = await stack.api.post(
        url("diploma-42"), json={"data_hash": digest, "ipfs_cid": CID_V1}, headers=headers
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "pending"
    done = await settled(stack, "diploma-42", headers)
    assert done["status"] == "confirmed" and done["tx_hash"] and done["block"] > 0
    assert await on_chain(stack, tenant, "diploma-42") == (digest, CID_V1, done["block"])
    # the row says confirmed a moment before the workflow's last steps (job log, status) end
    job = await eventually(
        lambda: stack.api.get(f"/api/v1/jobs/{done['workflow_id']}", headers=headers),
        lambda r: r.json().get("status") != "running",
        what="the anchor's job to end",
    )
    assert job.json()["kind"] == "credential_anchor" and job.json()["status"] == "succeeded"


async def test_anchoring_again_is_idempotent_and_another_hash_is_409(stack: Stack) -> None:
    tenant = unique_tenant()
    headers = stack.auth("issuer", tenant)
    body = {"data_hash": data_hash(), "ipfs_cid": CID_V0}
    first = await stack.api.post(url("c-1"), json=body, headers=headers)
    second = await stack.api.post(url("c-1"), json=body, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["workflow_id"] == second.json()["workflow_id"]
    await settled(stack, "c-1", headers)
    third = await stack.api.post(url("c-1"), json=body, headers=headers)
    assert third.json()["status"] == "confirmed"
    key = f"credential:{credential_key(tenant, 'c-1')}"
    async with stack.sessions() as session:
        sent = await session.execute(
            select(func.count())
            .select_from(EvmTransaction)
            .where(EvmTransaction.idempotency_key == key)
        )
        assert sent.scalar_one() == 1
    other = await stack.api.post(
        url("c-1"), json={**body, "data_hash": data_hash()}, headers=headers
    )
    assert other.status_code == 409 and other.json()["error"]["field"] == "credential_id"
    # the same id in another tenant is another credential
    elsewhere = stack.auth("issuer", unique_tenant())
    assert (await stack.api.get(url("c-1"), headers=elsewhere)).status_code == 404
    never = await stack.api.get(url("never-anchored"), headers=headers)
    assert never.status_code == 404 and never.json()["error"]["field"] == "credential_id"


async def test_a_reverting_anchor_ends_failed_with_the_error(stack: Stack) -> None:
    """The registry's owner hands the issuer role to someone else: the anchor reverts."""
    tenant = unique_tenant()
    headers = stack.auth("issuer", tenant)
    owner = LocalSigner(stack.settings.sandbox_registry_deployer_private_key)
    registry = stack.settings.credential_registry_address
    selector = keccak(text="setIssuer(address)")[:4]

    async def set_issuer(address: str) -> None:
        data = selector + encode(["address"], [address])
        await _send(stack.chain.client, owner, {"to": registry, "data": "0x" + data.hex()})

    await set_issuer(owner.address)
    try:
        response = await stack.api.post(
            url("revoked"), json={"data_hash": data_hash(), "ipfs_cid": CID_V1}, headers=headers
        )
        assert response.status_code == 202
        done = await settled(stack, "revoked", headers)
    finally:
        await set_issuer(stack.chain.treasury)
    assert done["status"] == "failed" and done["error"]
    async with stack.sessions() as session:
        row = await session.get(CredentialAnchorRecord, credential_key(tenant, "revoked"))
        assert row is not None and row.status == "failed"


BAD = [
    pytest.param("c-2", {"data_hash": "0x1234", "ipfs_cid": CID_V1}, "data_hash", id="short-hash"),
    pytest.param(
        "c-2", {"data_hash": "0x" + "00" * 32, "ipfs_cid": CID_V1}, "data_hash", id="zero"
    ),
    pytest.param("c-2", {"data_hash": "0x" + "ab" * 32, "ipfs_cid": "Qm123"}, "ipfs_cid", id="cid"),
    pytest.param(
        "c-2", {"data_hash": "0x" + "ab" * 32, "ipfs_cid": "b" + "a" * 58}, "ipfs_cid", id="cidv1"
    ),
    pytest.param("c-2", {"data_hash": "0x" + "ab" * 32}, "ipfs_cid", id="missing"),
    pytest.param(
        "bad id!", {"data_hash": "0x" + "ab" * 32, "ipfs_cid": CID_V1}, "credential_id", id="id"
    ),
]


@pytest.mark.parametrize(("credential_id", "body", "field"), BAD)
async def test_bad_anchor_input_is_422_and_records_nothing(
    stack: Stack, credential_id: str, body: dict[str, str], field: str
) -> None:
    tenant = unique_tenant()
    response = await stack.api.post(url(credential_id), json=body, headers=stack.auth("i", tenant))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    async with stack.sessions() as session:
        rows = await session.execute(
            select(func.count())
            .select_from(CredentialAnchorRecord)
            .where(CredentialAnchorRecord.tenant == tenant)
        )
        assert rows.scalar_one() == 0


async def root_on_chain(stack: Stack, root: str) -> tuple[int, int]:
    selector = keccak(text="rootOf(bytes32)")[:4]
    raw = await stack.chain.client.call(
        stack.settings.credential_registry_address,
        "0x" + (selector + encode(["bytes32"], [bytes.fromhex(root[2:])])).hex(),
    )
    count, _at, block = decode(["uint32", "uint64", "uint64"], bytes.fromhex(raw[2:]))
    return count, block


async def test_a_batch_is_one_root_per_transaction_and_every_proof_verifies(stack: Stack) -> None:
    from domain.merkle import leaf, verify

    tenant = unique_tenant()
    headers = stack.auth("registrar", tenant)
    size = stack.settings.credential_anchor_batch_size
    # a full batch, anchored at once, and two more, anchored when the batch wait is over
    items = [
        {"credential_id": f"cert-{i}", "data_hash": data_hash(), "ipfs_cid": CID_V1}
        for i in range(size + 2)
    ]
    response = await stack.api.post(
        "/api/v1/credentials/anchor/batch", json={"items": items}, headers=headers
    )
    assert response.status_code == 202, response.text
    assert all(r["anchor"]["mode"] == "batch" for r in response.json())
    done = [await settled(stack, item["credential_id"], headers) for item in items]
    assert {d["status"] for d in done} == {"confirmed"}
    roots = {d["batch_root"] for d in done}
    assert sorted(sum(d["batch_root"] == r for d in done) for r in roots) == [2, size]
    for item, anchor in zip(items, done, strict=True):
        key = credential_key(tenant, item["credential_id"])
        proof = [bytes.fromhex(p[2:]) for p in anchor["proof"]]
        root = bytes.fromhex(anchor["batch_root"][2:])
        assert verify(proof, root, leaf(key, item["data_hash"], item["ipfs_cid"]))
    for root_hex in roots:
        members = [d for d in done if d["batch_root"] == root_hex]
        assert len({d["tx_hash"] for d in members}) == 1  # one transaction per root
        assert await root_on_chain(stack, root_hex) == (len(members), members[0]["block"])
    # the single route can join a batch too
    single = await stack.api.post(
        url("cert-solo"),
        json={"data_hash": data_hash(), "ipfs_cid": CID_V0, "batch": True},
        headers=headers,
    )
    assert single.status_code == 202 and single.json()["mode"] == "batch"
    assert (await settled(stack, "cert-solo", headers))["status"] == "confirmed"


async def test_batch_input_is_checked_whole(stack: Stack) -> None:
    tenant = unique_tenant()
    headers = stack.auth("registrar", tenant)
    item = {"credential_id": "dup", "data_hash": data_hash(), "ipfs_cid": CID_V1}
    twice = await stack.api.post(
        "/api/v1/credentials/anchor/batch", json={"items": [item, item]}, headers=headers
    )
    assert twice.status_code == 422 and twice.json()["error"]["field"] == "items.1.credential_id"
    bad = await stack.api.post(
        "/api/v1/credentials/anchor/batch",
        json={"items": [item, {**item, "credential_id": "x", "ipfs_cid": "nope"}]},
        headers=headers,
    )
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "items.1.ipfs_cid"
    too_many = await stack.api.post(
        "/api/v1/credentials/anchor/batch",
        json={"items": [{**item, "credential_id": f"c{i}"} for i in range(1001)]},
        headers=headers,
    )
    assert too_many.status_code == 422 and too_many.json()["error"]["field"] == "items"
    async with stack.sessions() as session:
        rows = await session.execute(
            select(func.count())
            .select_from(CredentialAnchorRecord)
            .where(CredentialAnchorRecord.tenant == tenant)
        )
        assert rows.scalar_one() == 0
    # an id already anchored with another hash is refused for that item only
    first = await stack.api.post(
        "/api/v1/credentials/anchor/batch", json={"items": [item]}, headers=headers
    )
    assert first.status_code == 202
    mixed = await stack.api.post(
        "/api/v1/credentials/anchor/batch",
        json={"items": [{**item, "data_hash": data_hash()}, {**item, "credential_id": "fresh"}]},
        headers=headers,
    )
    assert mixed.status_code == 202
    results = mixed.json()
    assert results[0]["anchor"] is None and results[0]["error"]["code"] == "conflict"
    assert results[1]["anchor"]["status"] == "pending"


# --- keys, quota, retries -------------------------------------------------------------------------


async def status_of(stack: Stack, credential_id: str, headers: dict[str, str], want: str):
    response = await eventually(
        lambda: stack.api.get(url(credential_id), headers=headers),
        lambda r: r.json().get("status") == want,
        timeout=60,
        what=f"the anchor of {credential_id} to be {want}",
    )
    return dict(response.json())


async def test_a_colon_in_tenant_or_id_cannot_make_two_credentials_one(stack: Stack) -> None:
    """keccak("a:b" + ":" + "c") == keccak("a" + ":" + "b:c"): under the old key the second
    tenant got a 409 for the first one's credential (and could have read its status)."""
    base = unique_tenant()
    first, second = stack.auth("i", f"{base}:b"), stack.auth("i", base)
    one, two = data_hash(), data_hash()
    a = await stack.api.post(url("c"), json={"data_hash": one, "ipfs_cid": CID_V1}, headers=first)
    b = await stack.api.post(
        url("b:c"), json={"data_hash": two, "ipfs_cid": CID_V1}, headers=second
    )
    assert a.status_code == 202 and b.status_code == 202, b.text
    assert a.json()["workflow_id"] != b.json()["workflow_id"]
    assert credential_key(f"{base}:b", "c") != credential_key(base, "b:c")
    assert (await settled(stack, "c", first))["status"] == "confirmed"
    assert (await settled(stack, "b:c", second))["status"] == "confirmed"
    assert (await on_chain(stack, f"{base}:b", "c"))[0] == one
    assert (await on_chain(stack, base, "b:c"))[0] == two


async def test_an_anchor_made_under_the_legacy_key_is_still_found(stack: Stack) -> None:
    tenant = unique_tenant()
    headers = stack.auth("i", tenant)
    digest = data_hash()
    async with stack.sessions.begin() as session:
        for owner, cid in ((tenant, "old-1"), (f"{tenant}:x", "y")):
            session.add(
                CredentialAnchorRecord(
                    credential_key=legacy_credential_key(owner, cid),
                    credential_id=cid,
                    tenant=owner,
                    requested_by="i",
                    data_hash=digest,
                    ipfs_cid=CID_V1,
                    status="confirmed",
                    workflow_id=f"credential-anchor-{legacy_credential_key(owner, cid)}",
                    mode="single",
                    tx_hash="0x" + "ab" * 32,
                    block_number=1,
                )
            )
    found = await stack.api.get(url("old-1"), headers=headers)
    assert found.status_code == 200 and found.json()["status"] == "confirmed"
    again = await stack.api.post(
        url("old-1"), json={"data_hash": digest, "ipfs_cid": CID_V1}, headers=headers
    )
    assert again.status_code == 202 and again.json()["status"] == "confirmed"
    # the legacy key of tenant "<t>" + id "x:y" is that of tenant "<t>:x" + id "y": not theirs
    assert (await stack.api.get(url("x:y"), headers=headers)).status_code == 404
    async with stack.sessions() as session:
        rows = await session.execute(
            select(func.count())
            .select_from(CredentialAnchorRecord)
            .where(CredentialAnchorRecord.tenant == tenant)
        )
        assert rows.scalar_one() == 1


async def test_past_the_daily_quota_is_429_and_nothing_starts(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stack.settings, "credential_anchor_daily_quota_per_tenant", 2)
    tenant = unique_tenant()
    headers = stack.auth("i", tenant)
    for n in range(2):
        ok = await stack.api.post(
            url(f"q-{n}"), json={"data_hash": data_hash(), "ipfs_cid": CID_V1}, headers=headers
        )
        assert ok.status_code == 202
    over = await stack.api.post(
        url("q-2"), json={"data_hash": data_hash(), "ipfs_cid": CID_V1}, headers=headers
    )
    assert over.status_code == 429 and over.json()["error"]["code"] == "quota_exceeded"
    assert 0 < int(over.headers["Retry-After"]) <= 86_400
    batch = await stack.api.post(
        "/api/v1/credentials/anchor/batch",
        json={"items": [{"credential_id": "q-3", "data_hash": data_hash(), "ipfs_cid": CID_V1}]},
        headers=headers,
    )
    assert batch.status_code == 429 and "Retry-After" in batch.headers
    # the same credential again is not a new anchor: still answered
    repeat = await stack.api.get(url("q-0"), headers=headers)
    assert repeat.status_code == 200
    async with stack.sessions() as session:
        rows = await session.execute(
            select(CredentialAnchorRecord.credential_id).where(
                CredentialAnchorRecord.tenant == tenant
            )
        )
        assert sorted(rows.scalars()) == ["q-0", "q-1"]
    started = await stack.temporal.count_workflows(
        f'WorkflowId = "credential-anchor-{credential_key(tenant, "q-2")}"'
    )
    assert started.count == 0
    # another tenant has a quota of its own
    elsewhere = await stack.api.post(
        url("q-2"),
        json={"data_hash": data_hash(), "ipfs_cid": CID_V1},
        headers=stack.auth("i", unique_tenant()),
    )
    assert elsewhere.status_code == 202


async def test_a_failed_anchor_is_retried_through_the_api_and_the_jobs_api(stack: Stack) -> None:
    """The issuer role is taken away: both anchors revert and park; once it is back, one is
    retried with POST .../anchor/retry, the other with /api/v1/jobs/{id}/retry."""
    tenant = unique_tenant()
    headers = stack.auth("issuer", tenant)
    owner = LocalSigner(stack.settings.sandbox_registry_deployer_private_key)
    registry = stack.settings.credential_registry_address
    selector = keccak(text="setIssuer(address)")[:4]

    async def set_issuer(address: str) -> None:
        data = selector + encode(["address"], [address])
        await _send(stack.chain.client, owner, {"to": registry, "data": "0x" + data.hex()})

    digests = {"r-api": data_hash(), "r-job": data_hash()}
    await set_issuer(owner.address)
    try:
        for cid, digest in digests.items():
            response = await stack.api.post(
                url(cid), json={"data_hash": digest, "ipfs_cid": CID_V1}, headers=headers
            )
            assert response.status_code == 202
        failed = {cid: await status_of(stack, cid, headers, "failed") for cid in digests}
    finally:
        await set_issuer(stack.chain.treasury)
    assert all(f["error"] for f in failed.values())
    not_failed = await stack.api.post(f"{url('never')}/retry", headers=headers)
    assert not_failed.status_code == 404
    job = failed["r-job"]["workflow_id"]
    await eventually(
        lambda: stack.api.get(f"/api/v1/jobs/{job}", headers=headers),
        lambda r: r.json().get("status") == "needs_attention",
        what="the failed anchor to park",
    )
    retried = await stack.api.post(f"{url('r-api')}/retry", headers=headers)
    assert retried.status_code == 202, retried.text
    by_job = await stack.api.post(f"/api/v1/jobs/{job}/retry", headers=headers)
    assert by_job.status_code == 202, by_job.text
    for cid, digest in digests.items():
        done = await status_of(stack, cid, headers, "confirmed")
        assert await on_chain(stack, tenant, cid) == (digest, CID_V1, done["block"])
    again = await stack.api.post(f"{url('r-api')}/retry", headers=headers)
    assert again.status_code == 409  # confirmed: nothing to retry
