"""The scanner's log reading against a node that refuses wide eth_getLogs ranges: the ranges are
split, and no transfer is missed. Also: the scan's RPC calls do not depend on how many intents
are open."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.testing import ActivityEnvironment

from activities.chain import ChainReadActivities
from domain.deposit_watch import ScanInput, TransferStatus
from providers.evm import EvmClient
from sandbox.rpc_proxy import RpcProxy
from sandbox.serve import serve
from store import accounts, intents
from store.models import DepositIntent
from tests.fixtures.chain import Chain, new_wallet

LIMIT = 3


async def open_intents(sessions, chain_name: str, count: int) -> list[DepositIntent]:
    made = []
    async with sessions.begin() as session:
        user = await accounts.get_or_create_user(session, "scan-test", f"u-{uuid.uuid4().hex[:6]}")
        for i in range(count):
            intent = DepositIntent(
                tenant="scan-test",
                user_id=user.id,
                chain=chain_name,
                address=new_wallet(),
                hd_index=i,
                amount_minor=1_000_000,
                received_minor=0,
                status="open",
                workflow_id=f"deposit-watch-{uuid.uuid4()}",
                expires_at=datetime.now(UTC) + timedelta(hours=1),
            )
            session.add(intent)
            made.append(intent)
    return made


@pytest.fixture
async def proxy(chain: Chain):
    rpc = RpcProxy(chain.url, max_log_range=LIMIT)
    server = await serve(rpc.app)
    yield rpc, server.url
    await server.stop()


async def test_refused_ranges_are_split_and_no_log_is_missed(chain: Chain, sessions, proxy) -> None:
    rpc, url = proxy
    chain_name = f"scan-{uuid.uuid4().hex[:6]}"
    targets = await open_intents(sessions, chain_name, 4)
    async with sessions.begin() as session:  # first scan starts at the head minus the window
        await intents.set_checkpoint(session, chain_name, await chain.client.block_number())
    receipts = [await chain.pay(t.address, 1_000_000 + i) for i, t in enumerate(targets)]
    blocks = {int(r["blockNumber"], 16) for r in receipts}
    client = EvmClient(url, chain_id=chain.chain_id)
    scanner = ChainReadActivities(client, sessions, chain.usdc, max_range=1000)
    result = await scanner.scan(
        ScanInput(
            chain=chain_name,
            chain_id=chain.chain_id,
            usdc_address=chain.usdc,
            max_range=1000,
            reorg_window=2,
        )
    )
    await client.aclose()
    assert rpc.refused > 0, "the proxy should have refused the first, wide range"
    assert result.to_block >= max(blocks)
    matched = {m.intent_id: m.transfer for m in result.matches}
    assert set(matched) == {t.id for t in targets}
    assert {t.id: matched[t.id].amount_minor for t in targets} == {
        t.id: 1_000_000 + i for i, t in enumerate(targets)
    }
    async with sessions() as session:
        for target in targets:
            (row,) = await intents.transfers_of(session, target.id)
            assert row.status == TransferStatus.SEEN


async def test_scan_rpc_calls_do_not_grow_with_open_intents(chain: Chain, sessions) -> None:
    rpc = RpcProxy(chain.url)
    server = await serve(rpc.app)
    try:
        calls = {}
        for count in (1, 100):
            chain_name = f"scan-{uuid.uuid4().hex[:6]}"
            await open_intents(sessions, chain_name, count)
            async with sessions.begin() as session:
                await intents.set_checkpoint(
                    session, chain_name, await chain.client.block_number() - 20
                )
            client = EvmClient(server.url, chain_id=chain.chain_id)
            rpc.reset()
            await ChainReadActivities(client, sessions, chain.usdc, max_range=1000).scan(
                ScanInput(
                    chain=chain_name,
                    chain_id=chain.chain_id,
                    usdc_address=chain.usdc,
                    max_range=1000,
                    reorg_window=2,
                )
            )
            await client.aclose()
            calls[count] = sum(rpc.calls.values())
        assert calls[1] == calls[100]
    finally:
        await server.stop()


async def test_a_retried_scan_signals_again_what_a_dead_attempt_recorded(
    chain: Chain, sessions
) -> None:
    """A worker killed after the scan committed its sightings and before it answered: the
    retry's window no longer yields them as new (they are recorded), so before this fix their
    watches were never signalled and the deposit waited for its slow fallback look. A retry
    (attempt 2) matches every sighting still ``seen``; a normal round does not, and a credited
    one is never matched again."""
    chain_name = f"scan-{uuid.uuid4().hex[:6]}"
    (target,) = await open_intents(sessions, chain_name, 1)
    async with sessions.begin() as session:
        await intents.set_checkpoint(session, chain_name, await chain.client.block_number())
    await chain.pay(target.address, 1_000_000)
    scanner = ChainReadActivities(chain.client, sessions, chain.usdc, max_range=1000)
    request = ScanInput(
        chain=chain_name,
        chain_id=chain.chain_id,
        usdc_address=chain.usdc,
        max_range=1000,
        reorg_window=2,
    )
    lost = await scanner.scan(request)  # the attempt whose answer died with its worker
    assert [m.intent_id for m in lost.matches] == [target.id]

    def attempt(n: int) -> ActivityEnvironment:
        env = ActivityEnvironment()
        env.info = dataclasses.replace(env.info, attempt=n)
        return env

    next_round = await attempt(1).run(scanner.scan, request)
    assert next_round.matches == []  # a healthy round does not signal it again
    retried = await attempt(2).run(scanner.scan, request)
    assert [(m.intent_id, m.workflow_id, m.transfer) for m in retried.matches] == [
        (target.id, target.workflow_id, lost.matches[0].transfer)
    ]

    async with sessions.begin() as session:
        await intents.mark_transfer(
            session, target.id, lost.matches[0].transfer, TransferStatus.CREDITED
        )
    assert (await attempt(2).run(scanner.scan, request)).matches == []
    # the race a resent signal can meet: the watch credited it and closed, so the scanner marks
    # the sighting late; a credited transfer stays credited and the intent is not flagged late
    async with sessions.begin() as session:
        await intents.mark_transfer(
            session, target.id, lost.matches[0].transfer, TransferStatus.LATE
        )
    async with sessions() as session:
        (row,) = await intents.transfers_of(session, target.id)
        assert row.status == TransferStatus.CREDITED
        assert not (await intents.get(session, target.id)).late_transfer_seen
