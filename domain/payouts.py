"""Batched USDC payouts of M-Pesa deposits (``PAYOUT_BATCH_ENABLED``).

A deposit ready to be paid joins the deployment's one ``PayoutBatcher`` (signal-with-start,
workflow ``payout-batcher-<prefix>``) with a :class:`PayoutMember`; what arrives within
``max_wait_seconds`` of the first (at most ``max_size``) goes out as one
``Disperse.disperse(usdc, recipients, amounts)`` from the treasury, and each deposit is told
(:class:`PayoutAnswer`) either where its own Transfer log is, or to send its transfer itself.

Calldata is encoded by hand like ``providers.evm.erc20``: pure, so workflow code can build it.
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, Field

from domain.queues import Routed

#: ``disperse(address,address[],uint256[])``
DISPERSE_SELECTOR = "0xc87b1ae3"
#: ``approve(address,uint256)``
APPROVE_SELECTOR = "0x095ea7b3"
MAX_UINT256 = 2**256 - 1
#: the signal a deposit receives from the batcher
ANSWER_SIGNAL = "usdc_batch_answer"
#: the batcher's signal for a new member (with the current settings)
JOIN_SIGNAL = "add_with_settings"


def _word(value: int) -> str:
    if value < 0 or value > MAX_UINT256:
        raise ValueError("uint256 out of range")
    return format(value, "064x")


def _address_word(address: str) -> str:
    return address.lower().removeprefix("0x").rjust(64, "0")


def disperse_calldata(token: str, recipients: list[str], amounts: list[int]) -> str:
    """ABI encoding of ``disperse(token, recipients, amounts)`` (two dynamic arrays)."""
    if len(recipients) != len(amounts):
        raise ValueError("one amount per recipient")
    n = len(recipients)
    head = _address_word(token) + _word(0x60) + _word(0x60 + 32 * (n + 1))
    first = _word(n) + "".join(_address_word(r) for r in recipients)
    second = _word(n) + "".join(_word(a) for a in amounts)
    return DISPERSE_SELECTOR + head + first + second


def approve_calldata(spender: str, amount: int = MAX_UINT256) -> str:
    return APPROVE_SELECTOR + _address_word(spender) + _word(amount)


def approve_key(disperse: str) -> str:
    """One approval of a Disperse contract, ever: a revoked allowance is an operator's decision
    (batches then fall back to single transfers), never silently undone."""
    return f"payout-disperse-approve:{disperse.lower()}"


def batch_key(members: list[PayoutMember]) -> str:
    """The batch transaction's idempotency key: the same members always mean the same
    transaction, so a retried or replayed submit can never send a second one."""
    digest = hashlib.sha256("\n".join(sorted(m.key for m in members)).encode()).hexdigest()
    return f"payout-batch:{digest[:40]}"


class PayoutBatchConfig(BaseModel):
    """Settings the batcher runs with; they travel with every member (workflow code cannot
    read settings) and the latest replace the running batcher's from its next batch on."""

    disperse_address: str
    usdc_address: str
    max_size: int = Field(default=50, ge=2)
    max_wait_seconds: float = Field(default=2.0, gt=0)
    confirmations: int = 2
    use_safe_tag: bool = False
    confirmation_timeout_seconds: float = 600.0
    evm_heartbeat_timeout_seconds: float = 60.0
    provider_timeout_seconds: float = 30.0
    evm_submit_max_attempts: int = 10


class PayoutMember(BaseModel):
    deposit_id: str
    #: the deposit's workflow, signalled with the answer
    workflow_id: str
    recipient: str
    amount_minor: int = Field(gt=0)
    #: the deposit's own transfer key (``mpesa-deposit:<id>:usdc:<n>``), used if it is sent alone
    key: str


class PayoutBatcherInput(Routed):
    config: PayoutBatchConfig
    #: members waiting when the previous run continued as new
    carried: list[PayoutMember] = Field(default_factory=list)
    #: the treasury's approval of ``config.disperse_address`` is known to be confirmed
    approved_for: str | None = None
    #: deposits batched in the latest runs (bounded): a repeated join is not paid twice
    recent: list[str] = Field(default_factory=list)


class JoinPayoutBatch(Routed):
    member: PayoutMember
    config: PayoutBatchConfig


class PayoutAnswer(BaseModel):
    """The batcher's answer to one member: paid (its Transfer log in the batch transaction) or
    not (``paid`` false: the batch failed and can never land; send the transfer alone)."""

    paid: bool
    batch_key: str
    tx_hash: str | None = None
    block_number: int | None = None
    log_index: int | None = None
    batch_size: int = 0
    error: str | None = None


class BatchTransfersInput(BaseModel):
    tx_hash: str
    token: str


class BatchTransfer(BaseModel):
    """A Transfer log of the batch transaction, from the treasury."""

    recipient: str
    amount_minor: int
    log_index: int


def match_transfers(
    members: list[PayoutMember], transfers: list[BatchTransfer]
) -> dict[str, BatchTransfer]:
    """Each member's own Transfer log (same recipient and amount, in the order given). A batch
    that succeeded paid every member (Disperse is all or nothing), so each finds one."""
    left = list(transfers)
    matched: dict[str, BatchTransfer] = {}
    for member in members:
        for i, transfer in enumerate(left):
            if (
                transfer.recipient.lower() == member.recipient.lower()
                and transfer.amount_minor == member.amount_minor
            ):
                matched[member.deposit_id] = left.pop(i)
                break
    return matched
