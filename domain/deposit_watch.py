"""On-chain USDC deposits: intents, the per-intent watch and the per-chain scanner.

Activities (queue ``evm-read``): ``chain.scan`` (scanner: logs in block ranges, matched to intents
and recorded), ``chain.check_transfers`` (watch: confirmations and canonical blocks),
``chain.fallback_transfers`` (watch: what the scanner recorded, or its own log query when the
scanner is stale). Queue ``db``: ``intents.credit_transfer``, ``intents.close``,
``intents.mark_transfer``, ``intents.late_transfer``.

Chain data is hostile: anyone can send any amount (zero too) to an intent's address. A transfer
below ``min_amount_minor`` (never below 1: zero is always ignored) is recorded as ``ignored`` and
never signalled, credited, or counted as one of the watch's checks.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from domain.queues import Routed


class IntentStatus(StrEnum):
    OPEN = "open"  # waiting for a transfer
    PARTIALLY_PAID = "partially_paid"  # confirmed transfers below the amount; still open
    PAID = "paid"  # exactly the amount arrived: final
    OVERPAID = "overpaid"  # more than the amount arrived: final, all of it credited
    EXPIRED = "expired"  # nothing confirmed before expiry: final
    EXPIRED_PARTIALLY_PAID = "expired_partially_paid"  # some arrived, then expiry: final
    STOPPED = "stopped"  # the watch reached its maximum number of checks: final


OPEN_STATUSES = frozenset({IntentStatus.OPEN, IntentStatus.PARTIALLY_PAID})


class TransferStatus(StrEnum):
    SEEN = "seen"  # in a block, not yet confirmed
    CREDITED = "credited"  # confirmed and credited
    REORGED = "reorged"  # its block left the canonical chain before confirmation
    LATE = "late"  # arrived when the intent was no longer open: recorded, flagged, not credited
    IGNORED = "ignored"  # below the minimum (address-poisoning dust, zero): recorded, nothing more
    ABANDONED = (
        "abandoned"  # its credit failed and an operator gave up on it (can be credited late)
    )


#: statuses of a transfer an admin may still credit (``POST .../credit-late``)
CREDITABLE_LATE = frozenset({TransferStatus.LATE, TransferStatus.ABANDONED})


def qualifies(amount_minor: int, min_amount_minor: int) -> bool:
    """Whether a transfer counts at all: zero never does, whatever the setting."""
    return amount_minor >= max(1, min_amount_minor)


class WatchConfig(BaseModel):
    confirmations: int = 2
    use_safe_tag: bool = False
    max_checks: int = 120
    #: how often a watch with nothing pending checks for itself (the scanner is the fast path)
    fallback_interval_seconds: float = 300.0
    #: the same while the scanner's checkpoint was fresh at the last look (patch
    #: ``deposit-watch-quiet-while-scanner-fresh``); None: always ``fallback_interval_seconds``
    healthy_fallback_interval_seconds: float | None = None
    #: expected seconds per block, to schedule confirmation checks
    block_time_seconds: float = 2.0
    #: a scanner checkpoint older than this is stale: the watch queries the chain itself
    scanner_stale_after_seconds: float = 60.0
    #: transfers below this (USDC base units) are ignored: ``DEPOSIT_MIN_AMOUNT``
    min_amount_minor: int = 1
    #: attempts of a credit before the watch parks for an operator
    credit_max_attempts: int = 10


class TransferSeen(BaseModel):
    """A USDC Transfer to an intent's address, in a given block."""

    tx_hash: str
    log_index: int
    block_number: int
    block_hash: str
    from_address: str
    amount_minor: int

    @property
    def key(self) -> str:
        return f"{self.tx_hash}:{self.log_index}"


class DepositWatchInput(Routed):
    intent_id: str
    tenant: str
    user_id: str
    subject: str
    chain: str
    chain_id: int
    address: str
    amount_minor: int = Field(gt=0)
    expires_at: datetime
    #: the chain's head when the intent was made: where a fallback log query starts
    start_block: int
    config: WatchConfig = Field(default_factory=WatchConfig)
    #: the scanner's checkpoint was fresh when the intent was made: the first fallback look can
    #: wait ``config.healthy_fallback_interval_seconds``
    scanner_fresh: bool = False


class TransferCheck(BaseModel):
    transfer: TransferSeen
    #: confirmed, reorged, or pending (blocks still to come)
    outcome: str
    blocks_to_go: int = 0


class CheckTransfersInput(BaseModel):
    chain_id: int
    transfers: list[TransferSeen]
    confirmations: int
    use_safe_tag: bool = False


class CheckTransfersResult(BaseModel):
    checks: list[TransferCheck]
    head: int


class FallbackInput(BaseModel):
    intent_id: str
    chain: str
    address: str
    start_block: int
    stale_after_seconds: float
    min_amount_minor: int = 1


class FallbackResult(BaseModel):
    transfers: list[TransferSeen]
    #: True when the scanner was stale and this activity read the chain itself
    queried_chain: bool
    #: the scanner's checkpoint was fresh: the next look can wait the longer, healthy interval
    scanner_fresh: bool = False


class CreditTransferInput(BaseModel):
    intent_id: str
    chain_id: int
    transfer: TransferSeen


class IntentTotals(BaseModel):
    intent_id: str
    received_minor: int
    credited_now: bool


class MarkTransferInput(BaseModel):
    intent_id: str
    chain: str
    transfer: TransferSeen
    status: TransferStatus


class CloseIntentInput(BaseModel):
    intent_id: str
    status: IntentStatus
    received_minor: int


class DepositWatchState(BaseModel):
    intent_id: str
    status: IntentStatus = IntentStatus.OPEN
    amount_minor: int = 0
    received_minor: int = 0
    checks: int = 0
    pending: list[TransferSeen] = Field(default_factory=list)
    credited: list[str] = Field(default_factory=list)
    reorged: list[str] = Field(default_factory=list)
    fallback_queries: int = 0
    #: transfers below the minimum that reached the watch and were dropped (no check spent)
    ignored: int = 0
    #: set while a credit failed and the watch waits for ``retry`` / ``abandon``
    error: str | None = None
    needs_attention: bool = False
    #: transfers an operator abandoned after their credit failed (``tx:log``)
    abandoned: list[str] = Field(default_factory=list)
    updated_at: datetime | None = None


# --- a late transfer, credited by an admin --------------------------------------------------------


class LateCreditInput(Routed):
    intent_id: str
    tenant: str
    chain: str
    chain_id: int
    transfer: TransferSeen
    #: who asked (an admin's subject), kept in the ledger entry's description
    requested_by: str
    confirmations: int = 2
    use_safe_tag: bool = False
    block_time_seconds: float = 2.0
    credit_max_attempts: int = 10


class LateCreditState(BaseModel):
    intent_id: str
    transfer_key: str
    #: checking, credited, already_credited, reorged, abandoned, needs_attention
    status: str = "checking"
    credited_now: bool = False
    received_minor: int | None = None
    error: str | None = None


# --- the scanner ----------------------------------------------------------------------------------


class ScannerConfig(BaseModel):
    interval_seconds: float = 2.0
    max_range: int = 2000
    #: blocks below the checkpoint scanned again each round, to see re-included transfers
    reorg_window: int = 12
    #: rounds per run before continue-as-new (history stays small)
    rounds_per_run: int = 200
    #: transfers below this are recorded as ignored and never signalled
    min_amount_minor: int = 1


class ChainScannerInput(Routed):
    chain: str
    chain_id: int
    usdc_address: str
    config: ScannerConfig = Field(default_factory=ScannerConfig)
    rounds_done: int = 0


class ScanInput(BaseModel):
    chain: str
    chain_id: int
    usdc_address: str
    max_range: int
    reorg_window: int
    min_amount_minor: int = 1


class IntentMatch(BaseModel):
    intent_id: str
    workflow_id: str
    transfer: TransferSeen


class ScanResult(BaseModel):
    from_block: int
    to_block: int
    logs: int
    matches: list[IntentMatch]
    late: int = 0
    ignored: int = 0
