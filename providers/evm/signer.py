"""A local signer: the treasury's private key signs EIP-1559 transactions in this process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount


@dataclass(frozen=True)
class SignedTx:
    raw: str  # 0x-prefixed RLP
    hash: str  # 0x-prefixed


class LocalSigner:
    def __init__(self, private_key: str) -> None:
        self._account: LocalAccount = Account.from_key(private_key)

    @property
    def address(self) -> str:
        return str(self._account.address)

    def sign(self, tx: dict[str, Any]) -> SignedTx:
        signed = self._account.sign_transaction(tx)
        return SignedTx(raw="0x" + signed.raw_transaction.hex(), hash="0x" + signed.hash.hex())

    def sign_message_hash(self, message: bytes) -> str:
        """EIP-191 personal signature of ``message`` (used for content manifests)."""
        from eth_account.messages import encode_defunct

        return "0x" + self._account.sign_message(encode_defunct(message)).signature.hex()
