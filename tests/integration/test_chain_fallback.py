"""A watch's fallback wake-up (``chain.fallback_transfers``) and the RPC it costs.

With 10,000 open intents the scanner's workflow tasks starved behind the watches' on a loaded
worker; its checkpoint went stale and every watch waking up then made its own eth_blockNumber +
eth_getLogs (about 1,000 of each per minute). Now a fresh checkpoint costs no call, and a stale
one costs one catch-up scan however many watches wake up, each still finding its transfer."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from activities.chain import ChainReadActivities
from domain.deposit_watch import FallbackInput, TransferStatus
from providers.evm import EvmClient
from sandbox.rpc_proxy import RpcProxy
from sandbox.serve import serve
from store import accounts, intents
from store.models import ChainCheckpoint, DepositIntent
from tests.fixtures.chain import Chain, new_wallet

STALE_AFTER = 60.0


async def open_intents(sessions, chain_name: str, count: int, start_block: int) -> list:
    made = []
    async with sessions.begin() as session:
        user = await accounts.get_or_create_user(session, "fb-test", f"u-{uuid.uuid4().hex[:6]}")
        for i in range(count):
            intent = DepositIntent(
                tenant="fb-test",
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
    return [(intent.id, intent.address, start_block) for intent in made]


async def checkpoint_at(sessions, chain_name: str, block: int, age_seconds: float) -> None:
    async with sessions.begin() as session:
        await intents.set_checkpoint(session, chain_name, block)
        await session.execute(
            update(ChainCheckpoint)
            .where(ChainCheckpoint.chain == chain_name)
            .values(scanned_at=datetime.now(UTC) - timedelta(seconds=age_seconds))
        )


def fallback(chain_name: str, intent: tuple[str, str, int]) -> FallbackInput:
    intent_id, address, start_block = intent
    return FallbackInput(
        intent_id=intent_id,
        chain=chain_name,
        address=address,
        start_block=start_block,
        stale_after_seconds=STALE_AFTER,
    )


@pytest.fixture
async def counted(chain: Chain, sessions):
    """Chain activities whose every RPC call goes through a counting proxy."""
    rpc = RpcProxy(chain.url)
    server = await serve(rpc.app)
    client = EvmClient(server.url, chain_id=chain.chain_id)
    await client.ensure_chain()
    rpc.reset()
    yield rpc, ChainReadActivities(client, sessions, chain.usdc, max_range=1000, reorg_window=2)
    await client.aclose()
    await server.stop()


async def test_fresh_checkpoint_fallback_reads_records_without_rpc(
    chain: Chain, sessions, counted
) -> None:
    rpc, activities = counted
    chain_name = f"fb-{uuid.uuid4().hex[:6]}"
    head = await chain.client.block_number()
    (target,) = await open_intents(sessions, chain_name, 1, head)
    await checkpoint_at(sessions, chain_name, head, age_seconds=1)
    first = await activities.fallback_transfers(fallback(chain_name, target))
    assert first.transfers == [] and not first.queried_chain
    assert sum(rpc.calls.values()) == 0


async def test_stale_checkpoint_many_watches_one_catch_up_scan(
    chain: Chain, sessions, counted
) -> None:
    """Thirty watches waking at once behind a silent scanner: one eth_getLogs, not thirty; the
    paid one finds its transfer, and the checkpoint is fresh for the next wake-ups."""
    rpc, activities = counted
    chain_name = f"fb-{uuid.uuid4().hex[:6]}"
    start = await chain.client.block_number()
    watches = await open_intents(sessions, chain_name, 30, start)
    await checkpoint_at(sessions, chain_name, start, age_seconds=10 * STALE_AFTER)
    paid = watches[7]
    receipt = await chain.pay(paid[1], 1_000_000)
    rpc.reset()

    results = await asyncio.gather(
        *(activities.fallback_transfers(fallback(chain_name, w)) for w in watches)
    )

    assert rpc.calls["eth_getLogs"] == 1, dict(rpc.calls)
    assert rpc.calls["eth_blockNumber"] == 1, dict(rpc.calls)
    assert sum(r.queried_chain for r in results) == 1
    found = {w[0]: r.transfers for w, r in zip(watches, results, strict=True)}
    assert [t.tx_hash for t in found[paid[0]]] == [receipt["transactionHash"].lower()]
    assert all(not transfers for intent_id, transfers in found.items() if intent_id != paid[0])
    async with sessions() as session:
        (row,) = await intents.transfers_of(session, paid[0])
        assert row.status == TransferStatus.SEEN and row.amount_minor == 1_000_000
        checkpoint = await intents.checkpoint(session, chain_name)
        assert checkpoint is not None and checkpoint.last_scanned_block is not None
        assert checkpoint.last_scanned_block >= int(receipt["blockNumber"], 16)

    rpc.reset()
    again = await activities.fallback_transfers(fallback(chain_name, paid))
    assert [t.tx_hash for t in again.transfers] == [receipt["transactionHash"].lower()]
    assert sum(rpc.calls.values()) == 0 and not again.queried_chain


async def test_before_the_scanners_first_round_a_watch_reads_its_own_address(
    chain: Chain, sessions, counted
) -> None:
    """No checkpoint block yet: nothing to catch up from, so the watch queries its address since
    the intent was made (as before)."""
    rpc, activities = counted
    chain_name = f"fb-{uuid.uuid4().hex[:6]}"
    start = await chain.client.block_number()
    (target,) = await open_intents(sessions, chain_name, 1, start)
    receipt = await chain.pay(target[1], 2_000_000)
    rpc.reset()
    result = await activities.fallback_transfers(fallback(chain_name, target))
    assert result.queried_chain
    assert [t.tx_hash for t in result.transfers] == [receipt["transactionHash"].lower()]
    assert rpc.calls["eth_getLogs"] == 1
