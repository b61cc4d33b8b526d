"""On-chain USDC deposits: intents, their watches, and the chain scanner."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field, SecretStr, field_validator

#: BIP-39's public test phrase: fine for the local chain, refused in production
TEST_MNEMONIC = (
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
)


class DepositSettings(BaseModel):
    #: seed phrase of the deposit addresses (one BIP-44 index per intent). Nothing running needs
    #: it once DEPOSIT_XPUB is set: keep it offline (empty here) in production
    deposit_hd_mnemonic: SecretStr = SecretStr(TEST_MNEMONIC)
    #: extended public key (xpub) of m/44'/60'/0'/0: the API derives deposit addresses from it
    #: (print it with `python -m providers.evm.xpub`); required in production; empty: derived
    #: from DEPOSIT_HD_MNEMONIC (local)
    deposit_xpub: str | None = None
    deposit_intent_ttl_minutes: float = 60.0
    #: bounds of an intent's amount, in whole USDC
    deposit_intent_min_usdc: str = "0.01"
    deposit_intent_max_usdc: str = "1000000"
    #: USDC transfers to an intent below this (a decimal string) are recorded and ignored: no
    #: credit, no check spent (address-poisoning dust); a 0-value transfer is always ignored
    deposit_min_amount: str = "0.01"
    #: a watch stops after this many checks (each wake-up by a signal or a timer is one)
    deposit_watch_max_checks: int = 120
    #: how often a watch with nothing pending looks for itself (the scanner is the fast path)
    deposit_watch_fallback_seconds: float = 300.0
    #: the same while the scanner's checkpoint was fresh at the watch's last look (or at the
    #: intent's creation): the scanner signals transfers, so this look is only a safety net, and
    #: 10,000 watches looking every 5 min kept a worker busy on an idle chain
    deposit_watch_healthy_fallback_seconds: float = Field(default=1800.0, gt=0)
    #: expected seconds between blocks (Base: 2), to schedule confirmation checks
    evm_block_time_seconds: float = 2.0

    chain_scanner_interval_seconds: float = 2.0
    #: blocks below the checkpoint read again each round, to see transfers re-included by a reorg
    chain_scanner_reorg_window: int = 12
    #: a scanner checkpoint older than this counts as down: watches query the chain themselves
    chain_scanner_stale_after_seconds: float = 60.0
    chain_scanner_rounds_per_run: int = 200

    @field_validator("deposit_min_amount")
    @classmethod
    def _usdc_decimal(cls, value: str) -> str:
        if not re.fullmatch(r"\d{1,12}(\.\d{1,6})?", value):
            raise ValueError("must be a USDC amount: a decimal string with at most 6 places")
        return value
