"""Batched USDC payouts through the whole stack (issue 16 section 3): the real dev server, the
Daraja sandbox, anvil with Disperse deployed, a real database. With PAYOUT_BATCH_ENABLED, deposits
paid together go out in fewer transactions than deposits, each credited once with its own amount
and Transfer log; a batch that reverts (the treasury's allowance revoked) is paid one transfer at
a time instead, and still each deposit once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from eth_abi import encode
from eth_utils import keccak
from sqlalchemy import select

from domain.mpesa import DepositStatus
from domain.payouts import MAX_UINT256, approve_key
from providers.evm import decode_transfer
from store.models import EvmTransaction, MpesaDeposit
from tests.e2e.test_mpesa_deposit_api import initiate, ledger_entries_for, portfolio
from tests.e2e.test_mpesa_trust import open_alerts
from tests.fixtures.chain import new_wallet
from tests.fixtures.stack import Stack, unique_tenant
from workflows.mpesa_deposit import MpesaDeposit as MpesaDepositWorkflow

pytestmark = pytest.mark.usefixtures("balanced_ledger")

#: MockUSDC's storage: owner (0), totalSupply (1), balanceOf (2), allowance (3)
ALLOWANCE_SLOT = 3


@pytest.fixture
def batching(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deposits the API starts from now on join the PayoutBatcher (the setting travels in each
    deposit's input; the worker reads nothing)."""
    monkeypatch.setattr(stack.settings, "payout_batch_enabled", True)
    monkeypatch.setattr(stack.settings, "payout_batch_wait_seconds", 3.0)


async def set_allowance(stack: Stack, amount: int) -> None:
    """The treasury's allowance to Disperse, set in storage (the treasury key is Settle's)."""
    inner = keccak(encode(["address", "uint256"], [stack.chain.treasury, ALLOWANCE_SLOT]))
    slot = keccak(encode(["address", "bytes32"], [stack.settings.payout_disperse_address, inner]))
    await stack.chain.rpc(
        "anvil_setStorageAt", stack.chain.usdc, "0x" + slot.hex(), "0x" + format(amount, "064x")
    )


async def deposit_many(stack: Stack, count: int) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """``count`` deposits by as many users at once, each to a wallet of its own."""
    tenant = unique_tenant()
    users = [stack.auth(f"user-{i}", tenant) for i in range(count)]
    responses = await asyncio.gather(
        *(initiate(stack, h, amount=100 + 10 * i, wallet=new_wallet()) for i, h in enumerate(users))
    )
    for response in responses:
        assert response.status_code in (200, 201, 202), response.text
    return [(r.json(), h) for r, h in zip(responses, users, strict=True)]


async def credited_rows(stack: Stack, started: list[tuple[dict[str, Any], dict[str, str]]]):
    return [
        await stack.wait_for_deposit(body["id"], {DepositStatus.CREDITED}, 90)
        for body, _ in started
    ]


async def assert_each_paid_once(stack: Stack, started, rows: list[MpesaDeposit]) -> None:
    for (body, headers), row in zip(started, rows, strict=True):
        assert row.usdc_minor and row.usdc_minor > 0
        assert row.wallet_address is not None
        assert await stack.chain.usdc_balance(row.wallet_address) == row.usdc_minor
        assert await portfolio(stack, headers) == row.usdc_minor
        assert await ledger_entries_for(stack, body["id"]) == 1


async def test_deposits_paid_together_go_out_in_fewer_transactions(
    stack: Stack, batching: None
) -> None:
    count = 6
    started = await deposit_many(stack, count)
    rows = await credited_rows(stack, started)
    await assert_each_paid_once(stack, started, rows)
    hashes = {row.usdc_tx_hash for row in rows}
    assert None not in hashes and len(hashes) < count
    # every deposit has its own Transfer log, with its recipient and amount, in its transaction
    for tx_hash in hashes:
        receipt = await stack.chain.client.receipt(str(tx_hash))
        assert receipt is not None and int(receipt["status"], 16) == 1
        logs = {t.log_index: t for t in map(decode_transfer, receipt["logs"]) if t is not None}
        members = [row for row in rows if row.usdc_tx_hash == tx_hash]
        if len(members) > 1:
            assert str(receipt["to"]).lower() == stack.settings.payout_disperse_address.lower()
        for row in members:
            assert row.usdc_log_index is not None or len(members) == 1
            if row.usdc_log_index is not None:
                log = logs[row.usdc_log_index]
                assert log.recipient.lower() == str(row.wallet_address).lower()
                assert log.amount == row.usdc_minor
                assert log.sender.lower() == stack.chain.treasury.lower()
        assert len(logs) == len(members)
    # the treasury approved Disperse once, through the wallet writer
    async with stack.sessions() as session:
        approvals = (
            (
                await session.execute(
                    select(EvmTransaction).where(
                        EvmTransaction.idempotency_key.startswith("payout-disperse-approve:")
                    )
                )
            )
            .scalars()
            .all()
        )
    assert [a.idempotency_key for a in approvals] == [
        approve_key(stack.settings.payout_disperse_address)
    ]


async def test_a_reverting_batch_falls_back_to_single_transfers(
    stack: Stack, batching: None
) -> None:
    # a first batch makes sure the approval is done (the batcher approves once, then trusts it)
    await credited_rows(stack, await deposit_many(stack, 2))
    await set_allowance(stack, 0)
    try:
        count = 4
        started = await deposit_many(stack, count)
        rows = await credited_rows(stack, started)
        await assert_each_paid_once(stack, started, rows)
        # each went out alone: its own transaction, a plain transfer, no shared log
        assert len({row.usdc_tx_hash for row in rows}) == count
        for (body, _), row in zip(started, rows, strict=True):
            state = await stack.deposit_handle(body["workflow_id"]).query(
                MpesaDepositWorkflow.status
            )
            assert "InsufficientAllowance" in (state.usdc_batch_fallback or ""), state
            receipt = await stack.chain.client.receipt(str(row.usdc_tx_hash))
            assert receipt is not None
            assert str(receipt["to"]).lower() == stack.chain.usdc.lower()
            assert row.usdc_log_index is None
        # the failed batch never signed a transaction (its gas estimate reverted)
        async with stack.sessions() as session:
            batches = (
                (
                    await session.execute(
                        select(EvmTransaction).where(
                            EvmTransaction.idempotency_key.startswith("payout-batch:")
                        )
                    )
                )
                .scalars()
                .all()
            )
        batched = {b.mined_hash for b in batches if b.mined_hash}
        assert not batched & {row.usdc_tx_hash for row in rows}
        # the platform's operator is told batches are failing
        alerts = await open_alerts(stack, "payout_batch_failed")
        assert any(
            f"batch of {count} failed" in a["message"] and "InsufficientAllowance" in a["message"]
            for a in alerts
        ), alerts
    finally:
        await set_allowance(stack, MAX_UINT256)
