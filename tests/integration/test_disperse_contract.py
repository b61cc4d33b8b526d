"""Disperse on a real anvil (deployed by the chain bootstrap at its deterministic address): one
transaction pays every recipient from the caller's allowance, one Transfer log each, in order;
an allowance short of the sum reverts the whole batch (nobody paid), as does a length mismatch.
A test account of its own (anvil #9) signs: the treasury's nonces belong to the wallet writer."""

from __future__ import annotations

from typing import Any

import pytest
from eth_utils import keccak, to_checksum_address

from domain.errors import EvmReverted
from domain.payouts import (
    APPROVE_SELECTOR,
    DISPERSE_SELECTOR,
    approve_calldata,
    disperse_calldata,
)
from providers.evm import LocalSigner, decode_transfer
from providers.evm.artifacts import abi
from runtime.settings import Settings
from runtime.settings.evm import SANDBOX_DISPERSE_ADDRESS
from sandbox.chain import _send, has_code, mint_usdc
from tests.fixtures.chain import Chain, new_wallet

#: anvil's account #9: used by this test alone
SENDER_KEY = "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6"


def selector(signature: str) -> str:
    return "0x" + keccak(text=signature).hex()[:8]


def test_hand_encoded_selectors_match_the_abi() -> None:
    names = {e["name"]: e for e in abi("Disperse") if e.get("type") == "function"}
    inputs = ",".join(i["type"] for i in names["disperse"]["inputs"])
    assert selector(f"disperse({inputs})") == DISPERSE_SELECTOR
    assert selector("approve(address,uint256)") == APPROVE_SELECTOR


@pytest.fixture
async def sender(chain: Chain) -> LocalSigner:
    signer = LocalSigner(SENDER_KEY)
    deployer = LocalSigner(Settings(_env_file=None).sandbox_deployer_private_key)
    if await chain.usdc_balance(signer.address) < 1_000 * 10**6:
        await mint_usdc(chain.client, deployer, chain.usdc, signer.address, 1_000 * 10**6)
    return signer


async def send(chain: Chain, signer: LocalSigner, to: str, data: str) -> dict[str, Any]:
    return await _send(chain.client, signer, {"to": to, "data": data})


async def test_disperse_pays_each_recipient_in_one_transaction(
    chain: Chain, sender: LocalSigner
) -> None:
    disperse = to_checksum_address(SANDBOX_DISPERSE_ADDRESS)
    assert await has_code(chain.client, disperse)
    recipients = [new_wallet() for _ in range(3)]
    amounts = [1_250_000, 7, 40_000_000]
    before = await chain.usdc_balance(sender.address)
    await send(chain, sender, chain.usdc, approve_calldata(disperse, sum(amounts)))
    receipt = await send(
        chain, sender, disperse, disperse_calldata(chain.usdc, recipients, amounts)
    )
    for recipient, amount in zip(recipients, amounts, strict=True):
        assert await chain.usdc_balance(recipient) == amount
    assert await chain.usdc_balance(sender.address) == before - sum(amounts)
    logs = [t for t in map(decode_transfer, receipt["logs"]) if t is not None]
    assert [(t.sender, t.recipient, t.amount) for t in logs] == [
        (sender.address, to_checksum_address(r), a)
        for r, a in zip(recipients, amounts, strict=True)
    ]
    assert len({t.log_index for t in logs}) == 3
    # the exact allowance was spent: nothing is left for anyone to take
    allowance = await chain.client.call(
        chain.usdc,
        selector("allowance(address,address)")
        + sender.address.lower()[2:].rjust(64, "0")
        + disperse.lower()[2:].rjust(64, "0"),
    )
    assert int(allowance, 16) == 0


async def test_short_allowance_reverts_the_whole_batch(chain: Chain, sender: LocalSigner) -> None:
    disperse = to_checksum_address(SANDBOX_DISPERSE_ADDRESS)
    recipients = [new_wallet(), new_wallet()]
    amounts = [500_000, 600_000]
    await send(chain, sender, chain.usdc, approve_calldata(disperse, sum(amounts) - 1))
    data = disperse_calldata(chain.usdc, recipients, amounts)
    with pytest.raises(EvmReverted) as raised:
        await chain.client.estimate_gas({"from": sender.address, "to": disperse, "data": data})
    assert getattr(raised.value.revert, "name", None) == "InsufficientAllowance", raised.value
    # the first recipient's payment fitted the allowance, yet nobody was paid
    assert [await chain.usdc_balance(r) for r in recipients] == [0, 0]
    mismatch = disperse_calldata(chain.usdc, recipients, amounts)
    with pytest.raises(EvmReverted):
        await chain.client.estimate_gas(
            {"from": sender.address, "to": disperse, "data": _drop_last_amount(mismatch)}
        )


def _drop_last_amount(calldata: str) -> str:
    """The same call with the amounts array one shorter: lengths 2 and 1."""
    body = calldata[10:]
    words = [body[i : i + 64] for i in range(0, len(body), 64)]
    # words: token, offset recipients, offset amounts, n, r1, r2, n, a1, a2
    words[6] = format(1, "064x")
    words = words[:-1]
    return calldata[:10] + "".join(words)
