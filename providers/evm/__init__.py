"""EVM chains (Base; anvil locally): an async RPC client, a local signer, ERC-20 helpers and the
compiled contract artifacts. Knows nothing of Temporal."""

from providers.evm.client import EvmClient, FeeQuote, LogFilter
from providers.evm.erc20 import TRANSFER_TOPIC, Erc20, TransferLog, decode_transfer
from providers.evm.signer import LocalSigner, SignedTx

__all__ = [
    "TRANSFER_TOPIC",
    "Erc20",
    "EvmClient",
    "FeeQuote",
    "LocalSigner",
    "LogFilter",
    "SignedTx",
    "TransferLog",
    "decode_transfer",
]
