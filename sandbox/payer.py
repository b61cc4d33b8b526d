"""Somebody paying USDC into Settle on the local chain (tests and benchmarks).

Never the treasury: the wallet writer owns the treasury's nonces. anvil's account #5 by default.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from providers.evm import EvmClient, LocalSigner
from providers.evm.erc20 import transfer_calldata

#: anvil's account #5
PAYER_KEY = "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba"


class Payer:
    def __init__(self, client: EvmClient, usdc: str, key: str = PAYER_KEY) -> None:
        self.client = client
        self.usdc = usdc
        self.signer = LocalSigner(key)
        self._lock = asyncio.Lock()

    @property
    def address(self) -> str:
        return self.signer.address

    async def pay(self, to: str, amount_minor: int) -> dict[str, Any]:
        """A USDC transfer, waited for until mined; returns its receipt."""
        (receipt,) = await self.pay_together([(to, amount_minor)])
        return receipt

    async def pay_together(self, payments: list[tuple[str, int]]) -> list[dict[str, Any]]:
        """Several transfers sent in one JSON-RPC batch, so they land in the same block."""
        async with self._lock:
            nonce = await self.client.nonce(self.address)
            fees = await self.client.fee_quote(priority_gwei=1, max_fee_gwei=1000)
            signed = [
                self.signer.sign(
                    {
                        "type": 2,
                        "chainId": self.client.chain_id,
                        "nonce": nonce + i,
                        "to": self.usdc,
                        "data": transfer_calldata(to, amount),
                        "value": 0,
                        "gas": 100_000,
                        "maxFeePerGas": fees.max_fee_per_gas,
                        "maxPriorityFeePerGas": fees.max_priority_fee_per_gas,
                    }
                )
                for i, (to, amount) in enumerate(payments)
            ]
            batch = [
                {"jsonrpc": "2.0", "id": i, "method": "eth_sendRawTransaction", "params": [tx.raw]}
                for i, tx in enumerate(signed)
            ]
            async with httpx.AsyncClient() as http:
                answers = (await http.post(self.client.rpc_url, json=batch)).json()
            if not all("result" in a for a in answers):
                raise RuntimeError(f"payment refused: {answers}")
            return [await self._mined(tx.hash) for tx in signed]

    async def _mined(self, tx_hash: str) -> dict[str, Any]:
        for _ in range(1200):
            receipt = await self.client.receipt(tx_hash)
            if receipt is not None:
                return receipt
            await asyncio.sleep(0.05)
        raise RuntimeError(f"payment {tx_hash} not mined")
