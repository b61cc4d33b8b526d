"""The scanner's log reading against a node that refuses wide eth_getLogs ranges: the ranges are
split, and no transfer is missed. Also: the scan's RPC calls do not depend on how many intents
are open."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

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
