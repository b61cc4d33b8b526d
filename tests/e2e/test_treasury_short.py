"""A short treasury through the whole stack (issue 14 section 2): the real dev server, the Daraja
sandbox, anvil and a real database. The treasury's MockUSDC balance is set to 0 (storage, not a
transaction: the treasury key is Settle's alone); the deposit waits with an alert, parks with the
readable shortfall, sends nothing meanwhile, and a retry after funding credits it once.
"""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi import encode
from eth_utils import keccak

from domain.mpesa import DepositStatus
from tests.e2e.test_mpesa_deposit_api import initiate, ledger_entries_for, portfolio, usdc_for
from tests.e2e.test_mpesa_trust import open_alerts, treasury_nonce
from tests.fixtures.chain import new_wallet
from tests.fixtures.stack import Stack, eventually, unique_tenant
from workflows.mpesa_deposit import MpesaDeposit as MpesaDepositWorkflow

pytestmark = pytest.mark.usefixtures("balanced_ledger")

#: MockUSDC's storage: owner (0), totalSupply (1), balanceOf (2)
BALANCE_OF_SLOT = 2


async def set_treasury_usdc(stack: Stack, amount: int) -> None:
    slot = keccak(encode(["address", "uint256"], [stack.chain.treasury, BALANCE_OF_SLOT]))
    await stack.chain.rpc(
        "anvil_setStorageAt", stack.chain.usdc, "0x" + slot.hex(), "0x" + format(amount, "064x")
    )
    assert await stack.chain.usdc_balance(stack.chain.treasury) == amount


async def test_drained_treasury_waits_alerts_parks_then_retry_credits_once(stack: Stack) -> None:
    tenant = unique_tenant()
    headers = stack.auth("alice", tenant)
    admin = stack.auth("ops", tenant, roles=("user", "admin"))
    wallet = new_wallet()
    funds = await stack.chain.usdc_balance(stack.chain.treasury)
    nonce = await treasury_nonce(stack)
    needed = usdc_for(stack, 150)
    shortfall = f"treasury holds 0.000000 USDC, needs {needed / 10**6:.6f}"
    await set_treasury_usdc(stack, 0)
    try:
        body: dict[str, Any] = (await initiate(stack, headers, amount=150, wallet=wallet)).json()
        handle = stack.deposit_handle(body["workflow_id"])
        waiting = await eventually(
            lambda: handle.query(MpesaDepositWorkflow.status),
            lambda s: (
                "waiting for the treasury" in (s.error or "")
                or s.status == DepositStatus.NEEDS_ATTENTION
            ),
            what="the deposit to wait for the treasury",
        )
        assert shortfall in (waiting.error or "")
        alerts = await open_alerts(stack, "treasury_low", tenant)
        assert any(body["id"] in a["message"] and shortfall in a["message"] for a in alerts)
        row = await stack.wait_for_deposit(body["id"], {DepositStatus.NEEDS_ATTENTION}, 30)
        assert shortfall in (row.failure_reason or "") and "0x" not in (row.failure_reason or "")
        view = (await stack.api.get(body["status_url"], headers=headers)).json()
        assert view["status"] == "needs_attention" and shortfall in (view["error"] or "")
        # the dead letters list it by its error type, for this tenant's admin
        parked = await eventually(
            lambda: stack.api.get(
                "/api/v1/dead-letter", params={"error_type": "TreasuryShort"}, headers=admin
            ),
            lambda r: (
                r.status_code == 200 and body["workflow_id"] in {i["id"] for i in r.json()["items"]}
            ),
            what="the parked deposit in the dead letters",
        )
        (item,) = [i for i in parked.json()["items"] if i["id"] == body["workflow_id"]]
        assert item["step"] == "sending USDC failed" and shortfall in item["error"]
        # nothing was signed or sent while short: no nonce used, no reverted transaction
        assert await treasury_nonce(stack) == nonce
        assert await stack.chain.usdc_balance(wallet) == 0 and await portfolio(stack, headers) == 0
    finally:
        await set_treasury_usdc(stack, funds)
    retried = await stack.api.post(
        f"/api/v1/dead-letter/{body['workflow_id']}/retry", headers=admin
    )
    assert retried.status_code == 202, retried.text
    await stack.wait_for_deposit(body["id"], {DepositStatus.CREDITED}, 30)
    assert await stack.chain.usdc_balance(wallet) == needed
    assert await portfolio(stack, headers) == needed
    assert await ledger_entries_for(stack, body["id"]) == 1
    assert await treasury_nonce(stack) == nonce + 1
