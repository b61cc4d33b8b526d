"""ERC-20 helpers: balances, transfer calldata, and Transfer event decoding.

Calldata and log decoding are done by hand (selector + 32-byte words): they are tiny, exact, and
keep these helpers usable without a contract object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_utils import keccak, to_checksum_address

from providers.evm.client import EvmClient

TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
TRANSFER_SELECTOR = "0x" + keccak(text="transfer(address,uint256)").hex()[:8]
BALANCE_OF_SELECTOR = "0x" + keccak(text="balanceOf(address)").hex()[:8]


def _word_address(address: str) -> str:
    return address.lower().removeprefix("0x").rjust(64, "0")


def _word_uint(value: int) -> str:
    if value < 0 or value >= 2**256:
        raise ValueError("uint256 out of range")
    return format(value, "064x")


def transfer_calldata(to: str, amount: int) -> str:
    return TRANSFER_SELECTOR + _word_address(to) + _word_uint(amount)


@dataclass(frozen=True)
class TransferLog:
    token: str
    sender: str
    recipient: str
    amount: int
    tx_hash: str
    log_index: int
    block_number: int
    block_hash: str


def _hex(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    text = str(value)
    return text if text.startswith("0x") else "0x" + text


def _quantity(value: Any) -> int:
    """JSON-RPC quantities are hex strings; formatted clients give ints."""
    return int(value, 16) if isinstance(value, str) else int(value)


def decode_transfer(log: dict[str, Any]) -> TransferLog | None:
    """A Transfer log as returned by eth_getLogs; None for other events."""
    topics = [_hex(t) for t in log["topics"]]
    if len(topics) != 3 or topics[0].lower() != TRANSFER_TOPIC:
        return None
    data = _hex(log["data"])
    return TransferLog(
        token=to_checksum_address(_hex(log["address"])),
        sender=to_checksum_address("0x" + topics[1][-40:]),
        recipient=to_checksum_address("0x" + topics[2][-40:]),
        amount=int(data, 16) if data != "0x" else 0,
        tx_hash=_hex(log["transactionHash"]),
        log_index=_quantity(log["logIndex"]),
        block_number=_quantity(log["blockNumber"]),
        block_hash=_hex(log["blockHash"]),
    )


class Erc20:
    """Read access to one token; writes go through the wallet writer as calldata."""

    def __init__(self, client: EvmClient, address: str) -> None:
        self.client = client
        self.address = to_checksum_address(address)

    async def balance_of(self, holder: str, block: str | int = "latest") -> int:
        result = await self.client.call(
            self.address, BALANCE_OF_SELECTOR + _word_address(holder), block
        )
        return int(result, 16) if result not in ("0x", "") else 0

    def transfer_calldata(self, to: str, amount: int) -> str:
        return transfer_calldata(to, amount)

    def transfer_topic_filter(self, recipients: list[str] | None = None) -> list[Any]:
        """Topics for eth_getLogs: Transfer events, optionally to these recipients only."""
        if not recipients:
            return [TRANSFER_TOPIC]
        return [TRANSFER_TOPIC, None, ["0x" + _word_address(r) for r in recipients]]
