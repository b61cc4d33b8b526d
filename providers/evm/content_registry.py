"""Reads of a ContentRegistry: a hash's entry, and the chain data that proves how it got there.

The proof is gathered from the registration's own block: the ``ContentRegistered`` log with the
hash's topic, the transaction that emitted it (with its signed raw bytes, from which a third party
re-derives hash, sender and input) and that block's header, fetched by the log's block hash so a
reorg between two reads cannot mix two blocks. Knows nothing of Temporal.
"""

from __future__ import annotations

from typing import Any

from eth_utils import to_checksum_address

from domain.content import CONTENT_REGISTERED_TOPIC, RegistryEntry, decode_entry, entry_calldata
from domain.errors import EvmUnavailable, RegistryNotFound
from providers.evm.client import EvmClient, LogFilter


def _int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


class ContentRegistryReader:
    def __init__(self, client: EvmClient, address: str) -> None:
        self.client = client
        self.address = to_checksum_address(address)

    async def _require_code(self) -> None:
        code = str(await self.client.rpc("eth_getCode", [self.address, "latest"]))
        if code in ("0x", "0x0", ""):
            raise RegistryNotFound(f"no contract at {self.address}: not a ContentRegistry")

    async def entry(self, content_hash: str, block: int | str = "latest") -> RegistryEntry | None:
        """The hash's entry; None when it was never registered."""
        answer = await self.client.call(self.address, entry_calldata(content_hash), block)
        if answer in ("0x", ""):
            # an account without code answers every call with nothing
            await self._require_code()
            raise RegistryNotFound(f"{self.address} has code but answered entry() with nothing")
        return decode_entry(content_hash, answer)

    async def registration(self, entry: RegistryEntry) -> dict[str, Any]:
        """``{"transaction", "log", "block"}`` of the entry's registration, shaped as
        :class:`domain.content.ProofBundle` holds them (numbers as ints, bytes as 0x-hex)."""
        logs = await self.client.get_logs(
            LogFilter(
                entry.blockNumber,
                entry.blockNumber,
                self.address,
                [CONTENT_REGISTERED_TOPIC, entry.contentHash.lower()],
            )
        )
        if not logs:
            # the entry names this block, so a node without the log is behind or inconsistent
            raise EvmUnavailable(
                f"no ContentRegistered log for {entry.contentHash} in block {entry.blockNumber}"
            )
        log = logs[0]
        tx_hash = str(log["transactionHash"])
        tx = await self.client.transaction(tx_hash)
        raw = await self.client.rpc("eth_getRawTransactionByHash", [tx_hash])
        header = await self.client.rpc("eth_getBlockByHash", [log["blockHash"], False])
        if tx is None or raw is None or header is None:
            raise EvmUnavailable(f"the node lost transaction {tx_hash} or its block")
        return {
            "transaction": {
                "hash": tx_hash,
                "from": to_checksum_address(tx["from"]),
                "to": to_checksum_address(tx["to"]),
                "input": str(tx["input"]),
                "blockNumber": _int(tx["blockNumber"]),
                "blockHash": str(tx["blockHash"]),
                "raw": str(raw),
            },
            "log": {
                "address": to_checksum_address(log["address"]),
                "topics": [str(topic) for topic in log["topics"]],
                "data": str(log["data"]),
                "logIndex": _int(log["logIndex"]),
            },
            "block": {
                "number": _int(header["number"]),
                "hash": str(header["hash"]),
                "parentHash": str(header["parentHash"]),
                "timestamp": _int(header["timestamp"]),
                "stateRoot": str(header["stateRoot"]),
                "transactionsRoot": str(header["transactionsRoot"]),
                "receiptsRoot": str(header["receiptsRoot"]),
            },
        }
