"""Deposit addresses: one BIP-44 index per intent, derived from a seed phrase in settings.

Path ``m/44'/60'/0'/0/<index>`` (Ethereum's standard account 0, external chain): the same phrase
in any wallet software shows the same addresses, so funds sent to them can always be recovered.
The seed (PBKDF2 over the phrase) is computed once; each address is then an HMAC chain away.
"""

from __future__ import annotations

from eth_account import Account
from eth_account.hdaccount import key_from_seed, seed_from_mnemonic


def derivation_path(index: int) -> str:
    if not 0 <= index < 2**31:
        raise ValueError("BIP-44 address indexes are 0 .. 2^31 - 1")
    return f"m/44'/60'/0'/0/{index}"


class HdWallet:
    def __init__(self, mnemonic: str, passphrase: str = "") -> None:
        self._seed = seed_from_mnemonic(mnemonic, passphrase)

    def address(self, index: int) -> str:
        return str(Account.from_key(key_from_seed(self._seed, derivation_path(index))).address)
