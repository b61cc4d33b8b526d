"""An async JSON-RPC client for one EVM chain, on web3's async HTTP provider.

Raw JSON-RPC (``provider.make_request``) rather than web3's formatted API: every answer and error
is mapped here, once, into Settle's error families; web3's own retries are off because Temporal
owns retrying. ``calls`` counts requests per method (benchmarks compare designs by RPC volume).
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from eth_utils import to_checksum_address
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import (
    ProviderConnectionError,
    RequestTimedOut,
    TooManyRequests,
    Web3RPCError,
)

from domain.errors import (
    EvmChainMismatch,
    EvmRejected,
    EvmReverted,
    EvmUnavailable,
    LogRangeTooLarge,
)
from providers.evm.revert import describe_revert

GWEI = 10**9

#: fragments of the messages nodes and providers use to refuse a too-wide eth_getLogs
RANGE_TOO_LARGE = (
    "block range",
    "range is too large",
    "range too large",
    "exceed maximum block range",
    "exceeds max block range",
    "query returned more than",
    "log response size exceeded",
    "too many blocks",
)


class EvmNonceTooLow(EvmRejected):
    """The nonce was already used: our transaction (or another) is mined."""


class EvmAlreadyKnown(EvmRejected):
    """The node already has this exact transaction in its pool."""


class EvmUnderpriced(EvmRejected):
    """A replacement did not raise fees enough, or the fee is below what the node accepts."""


def map_rpc_error(method: str, error: dict[str, Any]) -> Exception:
    message = str(error.get("message", error))
    lowered = message.lower()
    detail = f"{method}: {message}"
    if method == "eth_getLogs" and any(f in lowered for f in RANGE_TOO_LARGE):
        return LogRangeTooLarge(detail)
    if "nonce too low" in lowered or "nonce has already been used" in lowered:
        return EvmNonceTooLow(detail)
    if any(f in lowered for f in ("already known", "known transaction", "already imported")):
        return EvmAlreadyKnown(detail)
    if "underpriced" in lowered or "max fee per gas less than block base fee" in lowered:
        return EvmUnderpriced(detail)
    if "execution reverted" in lowered or "revert" in lowered:
        # custom errors of our contracts are named, with their arguments, not left as hex
        readable, decoded = describe_revert(error)
        reverted = EvmReverted(f"{method}: {readable}")
        reverted.revert = decoded
        return reverted
    if (
        "insufficient funds" in lowered
        or "invalid" in lowered
        or int(error.get("code", 0)) == -32602
    ):
        return EvmRejected(detail)
    return EvmUnavailable(detail)


def _error_dict(error: Any, exc: BaseException | None) -> dict[str, Any]:
    if isinstance(error, dict):
        return dict(error)
    return {"message": str(error if error is not None else exc)}


def _int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


@dataclass(frozen=True)
class FeeQuote:
    """EIP-1559 fees in wei."""

    max_fee_per_gas: int
    max_priority_fee_per_gas: int

    def bumped(self, percent: float, cap: int) -> FeeQuote:
        """Both fees raised by at least ``percent`` (rounded up, +1 wei): a valid replacement."""
        factor = 1 + percent / 100

        def raise_(value: int) -> int:
            return max(math.ceil(value * factor), value + 1)

        priority = raise_(self.max_priority_fee_per_gas)
        maximum = max(raise_(self.max_fee_per_gas), priority)
        if maximum > cap:
            raise EvmRejected(f"a replacement would pay {maximum} wei per gas, above the cap {cap}")
        return FeeQuote(maximum, priority)


@dataclass(frozen=True)
class LogFilter:
    from_block: int
    to_block: int
    address: str | list[str] | None = None
    topics: list[Any] = field(default_factory=list)

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"fromBlock": hex(self.from_block), "toBlock": hex(self.to_block)}
        if self.address is not None:
            params["address"] = self.address
        if self.topics:
            params["topics"] = self.topics
        return params


class EvmClient:
    def __init__(self, rpc_url: str, *, chain_id: int, timeout_seconds: float = 10.0) -> None:
        self.rpc_url = rpc_url
        self.chain_id = chain_id
        self._timeout = timeout_seconds
        self.w3 = AsyncWeb3(
            AsyncHTTPProvider(
                rpc_url,
                request_kwargs={"timeout": timeout_seconds},
                exception_retry_configuration=None,
            )
        )
        self.calls: Counter[str] = Counter()
        self._chain_checked = False

    async def aclose(self) -> None:
        await self.w3.provider.disconnect()

    # --- transport -----------------------------------------------------------------------------

    async def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        self.calls[method] += 1
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that arrives as the request completes (CPython gh-86296), and the caller's task
            # then runs on as if never cancelled
            async with asyncio.timeout(self._timeout):
                response = await self.w3.provider.make_request(method, params or [])
        except Web3RPCError as exc:
            error = exc.rpc_response.get("error") if exc.rpc_response else None
            raise map_rpc_error(method, _error_dict(error, exc)) from exc
        except (
            TimeoutError,
            OSError,
            ProviderConnectionError,
            RequestTimedOut,
            TooManyRequests,
        ) as exc:
            raise EvmUnavailable(f"{method}: {type(exc).__name__}: {exc}") from exc
        except Exception as exc:  # aiohttp's client errors, without importing aiohttp
            if type(exc).__module__.startswith("aiohttp"):
                raise EvmUnavailable(f"{method}: {type(exc).__name__}: {exc}") from exc
            raise
        if "error" in response:
            raise map_rpc_error(method, _error_dict(response["error"], None))
        return response.get("result")

    # --- chain ---------------------------------------------------------------------------------

    async def ensure_chain(self) -> None:
        """Refuse to work against another chain than the configured one."""
        if self._chain_checked:
            return
        served = _int(await self.rpc("eth_chainId"))
        if served != self.chain_id:
            raise EvmChainMismatch(
                f"{self.rpc_url} serves chain {served}, settings say {self.chain_id}"
            )
        self._chain_checked = True

    async def block_number(self) -> int:
        return _int(await self.rpc("eth_blockNumber"))

    async def block(self, block: int | str) -> dict[str, Any] | None:
        """A block header by number or tag (latest, safe, finalized); None when unknown."""
        tag = hex(block) if isinstance(block, int) else block
        result: dict[str, Any] | None = await self.rpc("eth_getBlockByNumber", [tag, False])
        return result

    async def block_hash(self, number: int) -> str | None:
        header = await self.block(number)
        return str(header["hash"]) if header else None

    async def tagged_number(self, tag: str) -> int:
        header = await self.block(tag)
        if header is None:
            raise EvmUnavailable(f"the node has no {tag!r} block")
        return _int(header["number"])

    # --- accounts and calls --------------------------------------------------------------------

    async def nonce(self, address: str, tag: str = "pending") -> int:
        return _int(await self.rpc("eth_getTransactionCount", [to_checksum_address(address), tag]))

    async def balance(self, address: str) -> int:
        return _int(await self.rpc("eth_getBalance", [to_checksum_address(address), "latest"]))

    async def call(self, to: str, data: str, block: int | str = "latest") -> str:
        tag = hex(block) if isinstance(block, int) else block
        return str(await self.rpc("eth_call", [{"to": to, "data": data}, tag]))

    async def estimate_gas(self, tx: dict[str, Any]) -> int:
        return _int(await self.rpc("eth_estimateGas", [tx]))

    async def fee_quote(self, *, priority_gwei: float | None, max_fee_gwei: float) -> FeeQuote:
        """Priority from settings or the node; max fee = 2 x base fee + priority, capped."""
        header = await self.block("latest")
        if header is None or "baseFeePerGas" not in header:
            raise EvmUnavailable("latest block has no base fee (not an EIP-1559 chain?)")
        base = _int(header["baseFeePerGas"])
        if priority_gwei is not None:
            priority = int(priority_gwei * GWEI)
        else:
            priority = _int(await self.rpc("eth_maxPriorityFeePerGas"))
        cap = int(max_fee_gwei * GWEI)
        maximum = min(2 * base + priority, cap)
        if maximum < base:
            raise EvmRejected(f"the base fee {base} wei is above the fee cap {cap}")
        return FeeQuote(maximum, min(priority, maximum))

    # --- transactions --------------------------------------------------------------------------

    async def send_raw(self, raw: str) -> str:
        return str(await self.rpc("eth_sendRawTransaction", [raw]))

    async def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self.rpc("eth_getTransactionReceipt", [tx_hash])
        return result

    async def transaction(self, tx_hash: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self.rpc("eth_getTransactionByHash", [tx_hash])
        return result

    # --- logs ----------------------------------------------------------------------------------

    async def get_logs(self, log_filter: LogFilter) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.rpc("eth_getLogs", [log_filter.params()])
        return result

    async def get_logs_split(self, log_filter: LogFilter, max_range: int) -> list[dict[str, Any]]:
        """eth_getLogs over any range: at most ``max_range`` blocks per call, and a range the node
        refuses as too large is halved until it is accepted (never skipping a block)."""
        logs: list[dict[str, Any]] = []
        start = log_filter.from_block
        while start <= log_filter.to_block:
            end = min(start + max_range - 1, log_filter.to_block)
            logs += await self._logs_halving(log_filter, start, end)
            start = end + 1
        return logs

    async def _logs_halving(
        self, log_filter: LogFilter, start: int, end: int
    ) -> list[dict[str, Any]]:
        try:
            return await self.get_logs(LogFilter(start, end, log_filter.address, log_filter.topics))
        except LogRangeTooLarge:
            if start == end:
                raise
            middle = (start + end) // 2
            return await self._logs_halving(log_filter, start, middle) + await self._logs_halving(
                log_filter, middle + 1, end
            )
