"""A drained treasury on anvil: the wallet writer refuses to sign a USDC send it cannot cover
(no transaction, no nonce, no gas), names the shortfall, and a send that reverts anyway says why.
"""

from __future__ import annotations

import secrets
import uuid

import pytest
from eth_account import Account
from sqlalchemy import select

from activities.evm import EvmWriteActivities, WriterConfig
from domain.errors import EvmReverted, TreasuryShort
from domain.evm import AwaitTxInput, CancelTxInput, SubmitTxInput, TransferUsdcInput
from providers.evm import EvmClient, LocalSigner
from providers.evm.erc20 import transfer_calldata
from store.models import EvmTransaction
from tests.fixtures.chain import Chain, new_wallet

pytestmark = pytest.mark.usefixtures("no_heartbeat")

SHORTFALL = "treasury holds 0.000000 USDC, needs 1.162790"


@pytest.fixture
def no_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("activities.evm.activity.heartbeat", lambda *a, **k: None)


async def drained_writer(chain: Chain, sessions) -> EvmWriteActivities:
    """A treasury key with ETH for gas and no USDC at all."""
    key = "0x" + secrets.token_hex(32)
    address = Account.from_key(key).address
    await chain.rpc("anvil_setBalance", address, hex(10**19))
    return EvmWriteActivities(
        EvmClient(chain.url, chain_id=chain.chain_id),
        LocalSigner(key),
        sessions,
        WriterConfig(usdc_address=chain.usdc, poll_interval_seconds=0.1),
    )


async def rows(sessions, key: str) -> list[EvmTransaction]:
    async with sessions() as session:
        return list(
            (
                await session.execute(
                    select(EvmTransaction).where(EvmTransaction.idempotency_key == key)
                )
            ).scalars()
        )


async def test_short_treasury_is_refused_before_signing_with_the_shortfall(
    chain: Chain, sessions
) -> None:
    w = await drained_writer(chain, sessions)
    key = f"test:{uuid.uuid4()}"
    with pytest.raises(TreasuryShort) as raised:
        await w.transfer_usdc(
            TransferUsdcInput(idempotency_key=key, to=new_wallet(), amount_minor=1_162_790)
        )
    assert str(raised.value) == SHORTFALL
    assert (raised.value.balance, raised.value.needed) == (0, 1_162_790)
    # nothing signed, stored or sent: no nonce taken, no gas burnt
    assert await rows(sessions, key) == []
    assert await chain.client.nonce(w.address, "pending") == 0
    assert await chain.client.balance(w.address) == 10**19


async def test_a_reverting_gas_estimate_names_the_custom_error(chain: Chain, sessions) -> None:
    w = await drained_writer(chain, sessions)
    with pytest.raises(EvmReverted) as raised:
        await w.submit(
            SubmitTxInput(
                idempotency_key=f"test:{uuid.uuid4()}",
                to=chain.usdc,
                data=transfer_calldata(new_wallet(), 1_162_790),
            )
        )
    assert "InsufficientBalance(balance=0, needed=1162790)" in str(raised.value)
    assert "0xcf479181" not in str(raised.value)


async def test_a_mined_revert_for_want_of_usdc_is_a_treasury_short(chain: Chain, sessions) -> None:
    w = await drained_writer(chain, sessions)
    key = f"test:{uuid.uuid4()}"
    # a fixed gas limit skips the estimate: the transaction is mined and reverts
    await w.submit(
        SubmitTxInput(
            idempotency_key=key,
            to=chain.usdc,
            data=transfer_calldata(new_wallet(), 1_162_790),
            gas_limit=100_000,
        )
    )
    with pytest.raises(TreasuryShort) as raised:
        await w.await_confirmations(AwaitTxInput(idempotency_key=key, confirmations=1))
    assert str(raised.value).startswith(SHORTFALL) and "reverted" in str(raised.value)
    (row,) = await rows(sessions, key)
    assert row.status == "reverted"
    # cancelling it later reports the revert (it is final), as for any reverted transaction
    outcome = await w.cancel(CancelTxInput(idempotency_key=key, confirmations=1))
    assert outcome.outcome == "reverted"
