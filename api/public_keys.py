"""What the API knows of the wallets: addresses and public keys only.

The worker signs (treasury, Solana authority); nothing running signs from a deposit address. The
API reads ``TREASURY_ADDRESS``, ``SOLANA_AUTHORITY_PUBKEY`` and ``DEPOSIT_XPUB``; only when one is
not set (local use) does it fall back to deriving it from the private value, which the API's
environment may then leave empty in production.
"""

from __future__ import annotations

from functools import lru_cache

from solders.keypair import Keypair
from solders.pubkey import Pubkey

from domain.addresses import normalize_evm_address
from providers.evm import LocalSigner
from providers.evm.xpub import XpubWallet, xpub_from_mnemonic
from runtime.settings import Settings


class MissingPublicKey(RuntimeError):
    """Neither the public value nor the private one it could come from is configured."""


def treasury_address(settings: Settings) -> str:
    if settings.treasury_address:
        return normalize_evm_address(settings.treasury_address)
    key = settings.treasury_private_key.get_secret_value()
    if not key:
        raise MissingPublicKey("set TREASURY_ADDRESS")
    return LocalSigner(key).address


def solana_authority(settings: Settings) -> Pubkey:
    if settings.solana_authority_pubkey:
        return Pubkey.from_string(settings.solana_authority_pubkey)
    keypair = settings.solana_authority_keypair.get_secret_value()
    if not keypair:
        raise MissingPublicKey("set SOLANA_AUTHORITY_PUBKEY")
    return Keypair.from_base58_string(keypair).pubkey()


@lru_cache(maxsize=8)
def _wallet(xpub: str) -> XpubWallet:
    return XpubWallet(xpub)


@lru_cache(maxsize=2)
def _xpub_of(mnemonic: str) -> str:
    return xpub_from_mnemonic(mnemonic)


def deposit_wallet(settings: Settings) -> XpubWallet:
    """Deposit addresses by index, from DEPOSIT_XPUB (or, locally, the phrase's xpub)."""
    if settings.deposit_xpub:
        return _wallet(settings.deposit_xpub)
    mnemonic = settings.deposit_hd_mnemonic.get_secret_value()
    if not mnemonic:
        raise MissingPublicKey("set DEPOSIT_XPUB")
    return _wallet(_xpub_of(mnemonic))
