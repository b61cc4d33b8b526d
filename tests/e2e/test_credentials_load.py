"""Credential anchoring under load, on the stack's real dev server, anvil and database.

* 100 single anchors requested at once (the suite's short version of ``bench.credentials
  --single 200``, which measures the sustained rate): each is a treasury transaction of its
  own, confirmed and readable on the registry; their nonces are contiguous (the wallet writer
  neither skips nor reuses one); and the ``credentials`` queue's rate limit (``CREDENTIAL_ANCHOR_RATE_PER_SECOND``,
  set by its worker, enforced by the server) holds within 10 %.
* A batch of 1,000: every stored proof verifies to its root, and every root is on the registry
  with the number of credentials it covers, in batches of ``CREDENTIAL_ANCHOR_BATCH_SIZE``.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

from eth_abi import decode, encode
from eth_utils import keccak
from sqlalchemy import func, select
from temporalio.api.enums.v1 import EventType
from temporalio.service import RPCError, RPCStatusCode

from api.task_queue_limits import describe, set_limit
from domain.credentials import credential_key
from domain.merkle import leaf, verify
from domain.queues import ActivityQueue, activity_queue_for_prefix
from operations.credential_anchors import batcher_id
from store.models import CredentialAnchorRecord, EvmTransaction, EvmWallet
from tests.e2e.test_credentials import CID_V0, CID_V1, data_hash, url
from tests.fixtures.stack import Stack, eventually, unique_tenant

SINGLES = 100
BATCH = 1000
SUBMIT = "credentials.submit_anchor"


async def _counts(stack: Stack, tenant: str) -> dict[str, int]:
    async with stack.sessions() as session:
        rows = await session.execute(
            select(CredentialAnchorRecord.status, func.count())
            .where(CredentialAnchorRecord.tenant == tenant)
            .group_by(CredentialAnchorRecord.status)
        )
        return {status: count for status, count in rows.all()}


async def _settled(stack: Stack, tenant: str, n: int, timeout: float) -> dict[str, int]:
    """The tenant's anchors by status, once none of its ``n`` is pending."""
    counts: dict[str, int] = await eventually(
        lambda: _counts(stack, tenant),
        lambda c: sum(c.values()) == n and not c.get("pending"),
        timeout=timeout,
        interval=0.5,
        what=f"the {n} anchors of {tenant} to settle",
    )
    return counts


async def _rows(stack: Stack, tenant: str) -> dict[str, CredentialAnchorRecord]:
    async with stack.sessions() as session:
        rows = await session.execute(
            select(CredentialAnchorRecord).where(CredentialAnchorRecord.tenant == tenant)
        )
        return {row.credential_id: row for row in rows.scalars()}


async def _registry_call(stack: Stack, signature: str, key: str, types: list[str]) -> Any:
    selector = keccak(text=signature)[:4]
    raw = await stack.chain.client.call(
        stack.settings.credential_registry_address,
        "0x" + (selector + encode(["bytes32"], [bytes.fromhex(key[2:])])).hex(),
    )
    return decode(types, bytes.fromhex(raw[2:]))


async def _submit(stack: Stack, workflow_id: str) -> tuple[bool, datetime | None, int]:
    """From the workflow's history: whether ``credentials.submit_anchor`` is scheduled, when the
    server dispatched it to the worker (ActivityTaskStarted, the last attempt's) and its attempt."""
    scheduled: set[int] = set()
    async for event in stack.handle(workflow_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            if event.activity_task_scheduled_event_attributes.activity_type.name == SUBMIT:
                scheduled.add(event.event_id)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            if started.scheduled_event_id in scheduled:
                return True, event.event_time.ToDatetime(), started.attempt
    return bool(scheduled), None, 0


async def test_100_single_anchors_at_once_use_contiguous_nonces_within_the_rate_limit(
    stack: Stack,
) -> None:
    tenant = unique_tenant()
    headers = stack.auth("issuer", tenant)
    bodies = {f"load-{i}": {"data_hash": data_hash(), "ipfs_cid": CID_V1} for i in range(SINGLES)}
    limit = stack.settings.credential_anchor_rate_per_second
    queue = activity_queue_for_prefix(stack.settings.task_queue_prefix, ActivityQueue.CREDENTIALS)
    assert (await describe(stack.temporal, queue)).rate_per_second is None, (
        "a server-side limit is left on the credentials queue: the worker's would not apply"
    )

    # The queue is held at 0 while the 100 are requested, so that all their submits wait in its
    # backlog: from the release on, the rate limit alone decides how fast they go. Released by
    # removing the server-side setting, so the limit measured is the worker's configured one.
    await set_limit(stack.temporal, queue, 0.0, "settle test: 100 anchors into the backlog")
    try:
        responses = await asyncio.gather(
            *(stack.api.post(url(cid), json=body, headers=headers) for cid, body in bodies.items())
        )
        assert [r.status_code for r in responses] == [202] * SINGLES, [
            r.text for r in responses if r.status_code != 202
        ]
        assert {(r.json()["status"], r.json()["mode"]) for r in responses} == {
            ("pending", "single")
        }
        workflow_ids = [r.json()["workflow_id"] for r in responses]

        async def all_scheduled() -> bool:
            found = await asyncio.gather(*(_submit(stack, w) for w in workflow_ids))
            assert not any(at for _, at, _ in found), "a submit went through a queue held at 0"
            return all(scheduled for scheduled, _, _ in found)

        await eventually(
            all_scheduled, bool, timeout=60, what=f"the {SINGLES} submits to be scheduled"
        )
    finally:
        await set_limit(stack.temporal, queue, None, "settle test: back to the worker's limit")

    assert await _settled(stack, tenant, SINGLES, timeout=120) == {"confirmed": SINGLES}
    rows = await _rows(stack, tenant)
    assert set(rows) == set(bodies)
    # each on the registry with its hash, its CID and the block the API reports
    for cid, body in bodies.items():
        row = rows[cid]
        digest, stored_cid, _at, block = await _registry_call(
            stack,
            "credential(bytes32)",
            credential_key(tenant, cid),
            ["bytes32", "string", "uint64", "uint64"],
        )
        assert ("0x" + digest.hex(), stored_cid, block) == (
            body["data_hash"],
            body["ipfs_cid"],
            row.block_number,
        )

    # one treasury transaction each; no nonce skipped, none used twice
    keys = {f"credential:{row.credential_key}" for row in rows.values()}
    async with stack.sessions() as session:
        ours = list(
            (
                await session.execute(
                    select(EvmTransaction).where(EvmTransaction.idempotency_key.in_(keys))
                )
            ).scalars()
        )
        assert len(ours) == SINGLES
        assert len({tx.wallet_id for tx in ours}) == 1
        wallet = await session.get(EvmWallet, ours[0].wallet_id)
        assert wallet is not None
        low, high = min(tx.nonce for tx in ours), max(tx.nonce for tx in ours)
        # all the wallet sent within that span (another test's transaction may sit among them)
        span = (
            await session.execute(
                select(EvmTransaction.nonce).where(
                    EvmTransaction.wallet_id == wallet.id,
                    EvmTransaction.nonce.between(low, high),
                )
            )
        ).scalars()
        assert sorted(span) == list(range(low, high + 1))
    assert len({tx.nonce for tx in ours}) == SINGLES
    assert {tx.status for tx in ours} == {"confirmed"}
    assert {tx.mined_hash for tx in ours} == {row.tx_hash for row in rows.values()}
    for tx in ours:  # and on chain: mined from the treasury with the nonce it was given
        mined = await stack.chain.client.transaction(str(tx.mined_hash))
        assert mined is not None and int(mined["nonce"], 16) == tx.nonce
        assert mined["from"].lower() == wallet.address.lower() == stack.chain.treasury.lower()
    assert await stack.chain.client.nonce(wallet.address, "latest") > high

    # The server's limiter is a token bucket per task-queue partition (the dev server has 4, each
    # with limit/4 and a small burst), so a single second can see a few more than the limit; over
    # the run, the submits went out no faster than the limit, within 10 %.
    found = await asyncio.gather(*(_submit(stack, w) for w in workflow_ids))
    assert {attempt for _, _, attempt in found} == {1}
    starts = sorted(at for _, at, _ in found if at is not None)
    assert len(starts) == SINGLES
    offsets = [(at - starts[0]).total_seconds() for at in starts]
    rate = (SINGLES - 1) / offsets[-1]
    per_second = [sum(1 for s in offsets if k <= s < k + 1) for k in range(int(offsets[-1]) + 1)]
    assert rate <= 1.1 * limit, (
        f"{SINGLES} submits in {offsets[-1]:.1f} s: {rate:.2f}/s against {limit}/s; "
        f"per second {per_second}"
    )


async def _batcher_waiting(stack: Stack) -> list[str]:
    try:
        waiting: list[str] = await stack.handle(batcher_id(stack.settings)).query("waiting")
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return []  # not started yet in this session
        raise
    return waiting


async def test_a_batch_of_1000_has_every_proof_verify_against_a_root_on_chain(
    stack: Stack,
) -> None:
    tenant = unique_tenant()
    headers = stack.auth("registrar", tenant)
    size = stack.settings.credential_anchor_batch_size
    items = [
        {
            "credential_id": f"bulk-{i}",
            "data_hash": data_hash(),
            "ipfs_cid": CID_V1 if i % 2 else CID_V0,
        }
        for i in range(BATCH)
    ]
    # the batcher is shared: let another test's credentials go first, so the roots are ours alone
    await eventually(lambda: _batcher_waiting(stack), lambda w: not w, what="an idle batcher")
    response = await stack.api.post(
        "/api/v1/credentials/anchor/batch", json={"items": items}, headers=headers
    )
    assert response.status_code == 202, response.text
    results = response.json()
    assert [r["credential_id"] for r in results] == [i["credential_id"] for i in items]
    assert {(r["anchor"]["status"], r["anchor"]["mode"]) for r in results} == {("pending", "batch")}

    assert await _settled(stack, tenant, BATCH, timeout=120) == {"confirmed": BATCH}
    rows = await _rows(stack, tenant)
    assert set(rows) == {i["credential_id"] for i in items}
    by_root: dict[str, list[CredentialAnchorRecord]] = {}
    for item in items:
        row = rows[item["credential_id"]]
        assert row.batch_root and row.proof, item["credential_id"]
        proof = [bytes.fromhex(p[2:]) for p in json.loads(row.proof)]
        this_leaf = leaf(row.credential_key, item["data_hash"], item["ipfs_cid"])
        assert verify(proof, bytes.fromhex(row.batch_root[2:]), this_leaf), item["credential_id"]
        by_root.setdefault(row.batch_root, []).append(row)
    assert sorted(len(members) for members in by_root.values()) == [size] * (BATCH // size) + (
        [BATCH % size] if BATCH % size else []
    )

    # every root is on the registry, counting its credentials, in the block of its transaction
    async with stack.sessions() as session:
        sent = {
            tx.idempotency_key: tx
            for tx in (
                await session.execute(
                    select(EvmTransaction).where(
                        EvmTransaction.idempotency_key.in_(
                            [f"credential-batch:{root}" for root in by_root]
                        )
                    )
                )
            ).scalars()
        }
    for root, members in by_root.items():
        tx = sent[f"credential-batch:{root}"]
        assert tx.status == "confirmed"
        assert {(m.tx_hash, m.block_number) for m in members} == {(tx.mined_hash, tx.block_number)}
        count, _at, block = await _registry_call(
            stack, "rootOf(bytes32)", root, ["uint32", "uint64", "uint64"]
        )
        assert (count, block) == (len(members), tx.block_number)

    # and the API shows what the database holds
    for cid in ("bulk-0", f"bulk-{BATCH // 2}", f"bulk-{BATCH - 1}"):
        shown = (await stack.api.get(url(cid), headers=headers)).json()
        row = rows[cid]
        assert shown["status"] == "confirmed" and shown["batch_root"] == row.batch_root
        assert shown["proof"] == json.loads(str(row.proof)) and shown["tx_hash"] == row.tx_hash
