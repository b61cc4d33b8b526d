"""Requests to the wallet writer (the one place that sends from the treasury) and what it answers.

Activity names (queue ``evm-write``): ``evm.submit``, ``evm.transfer_usdc``,
``evm.await_confirmations``. Every request carries an idempotency key (the business key of the
effect, e.g. ``mpesa-deposit:<id>:usdc:1``): the same key always means the same transaction.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class SubmitTxInput(BaseModel):
    idempotency_key: str = Field(max_length=255)
    to: str
    #: calldata, 0x-prefixed hex
    data: str = "0x"
    #: wei
    value: int = 0
    #: gas limit; estimated (+20 %) when empty
    gas_limit: int | None = None
    purpose: str = ""


class TransferUsdcInput(BaseModel):
    idempotency_key: str = Field(max_length=255)
    to: str
    amount_minor: int = Field(gt=0, description="USDC base units (6 decimals)")
    purpose: str = "usdc_transfer"


class SubmittedTx(BaseModel):
    idempotency_key: str
    tx_hash: str
    nonce: int
    #: True when the key was already known: nothing new was signed
    already_submitted: bool = False


class AwaitTxInput(BaseModel):
    idempotency_key: str
    confirmations: int = Field(default=2, ge=1)
    use_safe_tag: bool = False


class CancelTxInput(BaseModel):
    """Make sure the transaction stored under ``idempotency_key`` can never land later unnoticed."""

    idempotency_key: str
    confirmations: int = Field(default=2, ge=1)
    use_safe_tag: bool = False


class CancelOutcome(BaseModel):
    idempotency_key: str
    #: never_submitted (nothing was signed under the key), cancelled (a 0-value self-transfer
    #: took its nonce), landed (the transaction itself was mined: ``receipt``), reverted (it was
    #: mined and reverted)
    outcome: str
    nonce: int | None = None
    #: the cancelling transaction, or the transaction itself when it landed or reverted
    tx_hash: str | None = None
    receipt: TxReceipt | None = None


class TxReceipt(BaseModel):
    idempotency_key: str
    #: the hash that was mined (a replacement's, when fees were bumped)
    tx_hash: str
    nonce: int
    block_number: int
    block_hash: str
    confirmations: int
    replacements: int = 0
    gas_used: int = 0
    effective_gas_price: int = 0


CancelOutcome.model_rebuild()
