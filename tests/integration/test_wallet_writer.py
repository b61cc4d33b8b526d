"""The wallet writer on anvil: contiguous nonces under concurrency, one transaction per key,
replacement of a stuck transaction with higher fees, confirmations."""

from __future__ import annotations

import asyncio
import itertools
import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.evm import EvmWriteActivities, WriterConfig
from domain.errors import EvmRejected, EvmReverted
from domain.evm import AwaitTxInput, CancelTxInput, SubmitTxInput, TransferUsdcInput
from providers.evm import EvmClient, LocalSigner
from providers.evm.client import LogFilter
from providers.evm.erc20 import TRANSFER_TOPIC, decode_transfer
from runtime.settings.evm import ANVIL_TREASURY_KEY
from store.models import EvmTransaction, EvmTxAttempt
from tests.fixtures.chain import Chain, new_wallet

# the activities run outside a worker here: heartbeats need an activity context
pytestmark = pytest.mark.usefixtures("no_heartbeat")


@pytest.fixture
def no_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("activities.evm.activity.heartbeat", lambda *a, **k: None)


def writer(
    chain: Chain, sessions: async_sessionmaker[AsyncSession], **config
) -> EvmWriteActivities:
    client = EvmClient(chain.url, chain_id=chain.chain_id)
    return EvmWriteActivities(
        client,
        LocalSigner(ANVIL_TREASURY_KEY),
        sessions,
        WriterConfig(usdc_address=chain.usdc, poll_interval_seconds=0.1, **config),
    )


async def transfers_to(chain: Chain, recipient: str) -> list:
    head = await chain.client.block_number()
    logs = await chain.client.get_logs(
        LogFilter(
            0, head, chain.usdc, [TRANSFER_TOPIC, None, "0x" + recipient.lower()[2:].rjust(64, "0")]
        )
    )
    return [decode_transfer(log) for log in logs]


async def test_fifty_concurrent_sends_get_contiguous_nonces_and_all_mine(
    chain: Chain, sessions
) -> None:
    w = writer(chain, sessions)
    recipient = new_wallet()
    keys = [f"test:{uuid.uuid4()}" for _ in range(50)]
    submitted = await asyncio.gather(
        *(
            w.transfer_usdc(
                TransferUsdcInput(idempotency_key=k, to=recipient, amount_minor=1_000 + i)
            )
            for i, k in enumerate(keys)
        )
    )
    nonces = sorted(s.nonce for s in submitted)
    assert nonces == list(range(nonces[0], nonces[0] + 50))
    receipts = await asyncio.gather(
        *(w.await_confirmations(AwaitTxInput(idempotency_key=k, confirmations=2)) for k in keys)
    )
    assert all(r.confirmations >= 2 for r in receipts)
    assert await chain.usdc_balance(recipient) == sum(1_000 + i for i in range(50))
    assert len(await transfers_to(chain, recipient)) == 50
    # the chain agrees: the treasury's next nonce follows the last one handed out
    assert await chain.client.nonce(chain.treasury, "latest") >= nonces[-1] + 1


async def test_same_key_twice_is_one_transaction(chain: Chain, sessions) -> None:
    w = writer(chain, sessions)
    recipient, key = new_wallet(), f"test:{uuid.uuid4()}"
    request = TransferUsdcInput(idempotency_key=key, to=recipient, amount_minor=5_000_000)
    first, second, third = await asyncio.gather(
        w.transfer_usdc(request), w.transfer_usdc(request), w.transfer_usdc(request)
    )
    assert first.tx_hash == second.tx_hash == third.tx_hash
    assert sum(not s.already_submitted for s in (first, second, third)) == 1
    await w.await_confirmations(AwaitTxInput(idempotency_key=key, confirmations=1))
    again = await w.transfer_usdc(request)
    assert again.already_submitted and again.tx_hash == first.tx_hash
    assert await chain.usdc_balance(recipient) == 5_000_000
    assert len(await transfers_to(chain, recipient)) == 1


async def test_stuck_transaction_is_replaced_with_higher_fees(
    manual_chain: Chain, sessions
) -> None:
    """A base-fee spike leaves our transaction unminable; the writer replaces it (same nonce)
    with fees at least 12.5 % higher, and exactly one of the two is mined."""
    chain = manual_chain
    w = writer(chain, sessions, stuck_after_seconds=0.5, priority_fee_gwei=1.0)
    recipient, key = new_wallet(), f"test:{uuid.uuid4()}"
    sent = await w.transfer_usdc(
        TransferUsdcInput(idempotency_key=key, to=recipient, amount_minor=777)
    )
    async with sessions() as session:
        first = (
            await session.execute(select(EvmTxAttempt).where(EvmTxAttempt.tx_hash == sent.tx_hash))
        ).scalar_one()
    spike = int(int(first.max_fee_per_gas) * 1.05)  # above what we offered, below a 12.5 % bump
    async with chain.mining(0.2, base_fee=spike):
        await asyncio.sleep(0.5)  # blocks our transaction cannot be in
        assert await chain.client.receipt(sent.tx_hash) is None
        receipt = await asyncio.wait_for(
            w.await_confirmations(AwaitTxInput(idempotency_key=key, confirmations=1)), 60
        )
    assert receipt.replacements >= 1
    assert receipt.tx_hash != sent.tx_hash and receipt.nonce == sent.nonce
    async with sessions() as session:
        tx = (
            await session.execute(
                select(EvmTransaction).where(EvmTransaction.idempotency_key == key)
            )
        ).scalar_one()
        fees = [
            int(a.max_fee_per_gas)
            for a in (
                await session.execute(
                    select(EvmTxAttempt)
                    .where(EvmTxAttempt.transaction_id == tx.id)
                    .order_by(EvmTxAttempt.created_at)
                )
            ).scalars()
        ]
    assert tx.status == "confirmed" and tx.mined_hash == receipt.tx_hash
    assert all(later >= earlier * 1.125 for earlier, later in itertools.pairwise(fees))
    assert await chain.usdc_balance(recipient) == 777
    assert len(await transfers_to(chain, recipient)) == 1


async def test_reverting_call_raises_non_retryable(chain: Chain, sessions) -> None:
    w = writer(chain, sessions)
    key = f"test:{uuid.uuid4()}"
    # MockUSDC.mint from the treasury (not its owner) reverts with NotOwner: gas given so that
    # estimation does not refuse it first, as a call that starts reverting after submit would
    data = "0x40c10f19" + new_wallet().lower()[2:].rjust(64, "0") + format(1, "064x")
    await w.submit(SubmitTxInput(idempotency_key=key, to=chain.usdc, data=data, gas_limit=100_000))
    with pytest.raises(EvmReverted):
        await w.await_confirmations(AwaitTxInput(idempotency_key=key, confirmations=1))


async def test_bad_recipient_is_refused_before_anything_is_signed(chain: Chain, sessions) -> None:
    w = writer(chain, sessions)
    key = f"test:{uuid.uuid4()}"
    with pytest.raises(EvmRejected):
        await w.transfer_usdc(TransferUsdcInput(idempotency_key=key, to="0x1234", amount_minor=1))
    async with sessions() as session:
        assert (
            await session.execute(
                select(EvmTransaction).where(EvmTransaction.idempotency_key == key)
            )
        ).first() is None


async def test_cancel_takes_the_nonce_of_a_pending_transaction_with_a_self_transfer(
    manual_chain: Chain, sessions
) -> None:
    """A transaction its caller gave up on can never land later: a 0-value transfer to the
    treasury takes its nonce, the original is never mined, and nothing it carried happens."""
    chain = manual_chain
    w = writer(chain, sessions)
    recipient, key = new_wallet(), f"test:{uuid.uuid4()}"
    sent = await w.transfer_usdc(
        TransferUsdcInput(idempotency_key=key, to=recipient, amount_minor=4_242)
    )
    assert await chain.client.transaction(sent.tx_hash) is not None  # in the pool, not mined
    cancelling = asyncio.create_task(w.cancel(CancelTxInput(idempotency_key=key, confirmations=1)))
    await asyncio.sleep(0.5)  # the cancel is signed and in the pool before any block is mined
    async with chain.mining(0.2):
        outcome = await asyncio.wait_for(cancelling, 60)
        assert outcome.outcome == "cancelled" and outcome.nonce == sent.nonce
        assert outcome.tx_hash != sent.tx_hash
        await chain.mine(3)
    assert await chain.client.receipt(sent.tx_hash) is None
    cancel = await chain.client.transaction(str(outcome.tx_hash))
    assert cancel is not None
    assert str(cancel["to"]).lower() == chain.treasury.lower() and int(cancel["value"], 16) == 0
    assert int(cancel["nonce"], 16) == sent.nonce
    assert await chain.usdc_balance(recipient) == 0
    # the key is spent: waiting on it or sending under it again says it was cancelled
    with pytest.raises(EvmRejected, match="cancelled"):
        await w.await_confirmations(AwaitTxInput(idempotency_key=key, confirmations=1))
    with pytest.raises(EvmRejected, match="cancelled"):
        await w.transfer_usdc(
            TransferUsdcInput(idempotency_key=key, to=recipient, amount_minor=4_242)
        )
    # and the writer goes on with the next nonce
    after = await w.transfer_usdc(
        TransferUsdcInput(idempotency_key=f"test:{uuid.uuid4()}", to=recipient, amount_minor=1)
    )
    assert after.nonce == sent.nonce + 1


async def test_cancel_reports_a_transaction_that_landed_first(
    manual_chain: Chain, sessions
) -> None:
    chain = manual_chain
    w = writer(chain, sessions)
    recipient, key = new_wallet(), f"test:{uuid.uuid4()}"
    sent = await w.transfer_usdc(
        TransferUsdcInput(idempotency_key=key, to=recipient, amount_minor=777)
    )
    await chain.mine(3)
    outcome = await w.cancel(CancelTxInput(idempotency_key=key, confirmations=1))
    assert outcome.outcome == "landed" and outcome.receipt is not None
    assert outcome.receipt.tx_hash == sent.tx_hash == outcome.tx_hash
    assert await chain.usdc_balance(recipient) == 777


async def test_cancel_of_a_key_never_used_sends_nothing(chain: Chain, sessions) -> None:
    w = writer(chain, sessions)
    outcome = await w.cancel(CancelTxInput(idempotency_key=f"test:{uuid.uuid4()}"))
    assert outcome.outcome == "never_submitted" and outcome.tx_hash is None


async def test_a_forgotten_transaction_is_sent_again_with_the_lower_nonces_blocking_it(
    manual_chain: Chain, sessions
) -> None:
    """The node lost both of two pending transactions (a restart, an eviction): waiting on the
    later one sends the earlier one again too, so both are mined in nonce order."""
    chain = manual_chain
    # not stuck within the test: only the forgotten-transaction path can send them again
    w = writer(chain, sessions, stuck_after_seconds=600)
    recipient = new_wallet()
    keys = [f"test:{uuid.uuid4()}" for _ in range(2)]
    first, second = [
        await w.transfer_usdc(TransferUsdcInput(idempotency_key=k, to=recipient, amount_minor=a))
        for k, a in zip(keys, (11, 22), strict=True)
    ]
    assert second.nonce == first.nonce + 1
    for sent in (first, second):
        await chain.rpc("anvil_dropTransaction", sent.tx_hash)
        assert await chain.client.transaction(sent.tx_hash) is None
    async with chain.mining(0.2):
        receipt = await asyncio.wait_for(
            w.await_confirmations(AwaitTxInput(idempotency_key=keys[1], confirmations=1)), 60
        )
    assert receipt.tx_hash == second.tx_hash
    assert await chain.client.receipt(first.tx_hash) is not None
    assert await chain.usdc_balance(recipient) == 33
