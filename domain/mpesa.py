"""Inputs, outputs and states of the M-Pesa deposit.

Pydantic models travel through Temporal with the pydantic data converter. Add fields with
defaults only: old histories must still decode.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from domain.fx import FxQuote
from domain.payouts import PayoutBatchConfig
from domain.queues import Routed


class DepositStatus(StrEnum):
    INITIATED = "initiated"  # row written, workflow starting
    AWAITING_PAYMENT = "awaiting_payment"  # STK push sent, waiting for the customer
    CONFIRMING = "confirming"  # no callback yet: asking Daraja with STK Push Query
    PAID = "paid"  # M-Pesa confirmed, not yet credited
    SENDING_USDC = "sending_usdc"  # converting and sending USDC from the treasury
    CREDITED = "credited"  # portfolio credited: final success
    FAILED = "failed"  # final failure (cancelled, timeout, rejected ...)
    NEEDS_ATTENTION = "needs_attention"  # a step that must happen is parked for an operator
    ABANDONED = "abandoned"  # an operator gave up on a parked deposit


FINAL_STATUSES = frozenset({DepositStatus.CREDITED, DepositStatus.FAILED, DepositStatus.ABANDONED})


class DepositStep(StrEnum):
    STK_PUSH = "stk_push"
    RESOLVE_PUSH = "resolve_push"  # a push's answer was lost: waiting for its callback
    AWAIT_CALLBACK = "await_callback"
    STK_QUERY = "stk_query"
    CONFIRM_PAYMENT = "confirm_payment"  # checking the callback with Daraja before any money moves
    CONVERT = "convert"  # KES -> USDC at the provider's rate
    SEND_USDC = "send_usdc"  # through the wallet writer
    CONFIRM_USDC = "confirm_usdc"  # waiting for confirmations
    CREDIT = "credit"
    DONE = "done"


class MpesaResultCode:
    """Daraja ResultCode values the workflow treats specially; any other non-zero is a failure."""

    SUCCESS = 0
    INSUFFICIENT_FUNDS = 1
    CANCELLED_BY_USER = 1032
    TIMEOUT_USER_UNREACHABLE = 1037
    WRONG_PIN = 2001


class MpesaDepositConfig(BaseModel):
    """Timeouts and retry figures, taken from settings when the deposit starts.

    They travel in the workflow input because workflow code cannot read settings.
    """

    callback_wait_seconds: float = 90.0
    query_interval_seconds: float = 10.0
    query_max_attempts: int = 12
    stk_push_max_attempts: int = 5
    stk_push_initial_interval_seconds: float = 2.0
    provider_timeout_seconds: float = 30.0
    credit_max_attempts: int = 5
    credit_initial_interval_seconds: float = 1.0
    #: the on-chain leg
    confirmations: int = 2
    use_safe_tag: bool = False
    evm_submit_max_attempts: int = 10
    confirmation_timeout_seconds: float = 600.0
    evm_heartbeat_timeout_seconds: float = 60.0
    #: a push whose answer was lost: how long to wait for its callback before pushing again
    push_resolve_seconds: float = 120.0
    #: how long to wait for the Transaction Status result (ResultURL) before asking again
    transaction_status_wait_seconds: float = 60.0
    transaction_status_max_attempts: int = 3
    #: FX: the quote given at initiation is honoured this long; later the current rate applies
    #: only within this deviation from it (percent, a decimal string)
    fx_quote_ttl_seconds: float = 900.0
    fx_max_deviation_percent: str = "2"
    #: a short treasury: the USDC send waits (backoff from the initial interval, doubling up to
    #: the maximum) this long in all, with an alert ``treasury_low``, then the deposit parks
    treasury_short_max_wait_seconds: float = 3600.0
    treasury_short_initial_interval_seconds: float = 30.0
    treasury_short_max_interval_seconds: float = 300.0
    #: batched payouts (PAYOUT_BATCH_ENABLED): the USDC goes out with others' through the
    #: PayoutBatcher; empty (the default): a transfer of its own, as always
    payout_batch: PayoutBatchConfig | None = None


class MpesaDepositInput(Routed):
    deposit_id: str
    tenant: str
    user_id: str
    subject: str
    phone: str
    amount_minor: int = Field(gt=0, description="KES cents; Daraja takes whole shillings")
    account_reference: str
    description: str = "Settle deposit"
    config: MpesaDepositConfig = Field(default_factory=MpesaDepositConfig)
    #: where the converted USDC goes; deposits started before the on-chain leg have none
    wallet_address: str | None = None
    #: the KES -> USDC quote given to the caller at initiation (deposits before it have none)
    quote: FxQuote | None = None


# --- activity inputs and outputs --------------------------------------------------------------


class StkPushInput(BaseModel):
    deposit_id: str
    phone: str
    amount_minor: int
    account_reference: str
    description: str
    #: False for deposits started with the ``mpesa-deposit-no-second-prompt`` patch: an earlier
    #: push of the deposit whose outcome stayed unknown until its prompt expired ends the deposit
    #: (``DarajaPushUnconfirmed``) instead of prompting the customer again. True (the default, so
    #: older histories' inputs read the same) keeps the earlier rule: prompt again after expiry.
    prompt_again_after_expiry: bool = True


class StkPushResult(BaseModel):
    """Daraja's answer to an STK push, or the push adopted from its callback (``adopted``)."""

    merchant_request_id: str
    checkout_request_id: str
    customer_message: str = ""
    adopted: bool = False


class StkQueryInput(BaseModel):
    deposit_id: str
    checkout_request_id: str


class StkQueryResult(BaseModel):
    """Daraja's answer to STK Push Query. ``pending`` means no final answer yet."""

    checkout_request_id: str
    pending: bool = False
    result_code: int | None = None
    result_desc: str = ""


class StkCallback(BaseModel):
    """A parsed Daraja STK callback (``Body.stkCallback``)."""

    merchant_request_id: str
    checkout_request_id: str
    result_code: int
    result_desc: str
    amount_minor: int | None = None
    receipt: str | None = None
    phone: str | None = None
    transaction_date: str | None = None


class TransactionStatusInput(BaseModel):
    deposit_id: str
    receipt: str
    #: ours, unique per query: the result must carry it back
    originator_id: str


class TransactionStatusRequested(BaseModel):
    """Daraja accepted a Transaction Status query; its result comes to the ResultURL."""

    originator_conversation_id: str
    conversation_id: str


class TransactionStatusResult(BaseModel):
    """The asynchronous Transaction Status result (``Result``), forwarded by the API."""

    originator_conversation_id: str
    conversation_id: str
    result_code: int
    result_desc: str
    receipt: str | None = None
    amount_minor: int | None = None
    #: ``Completed``, ``Cancelled``, ... (``TransactionStatus`` result parameter)
    transaction_status: str | None = None
    #: the QueueTimeOutURL was called instead: Daraja gave up on the query
    timed_out: bool = False


class RaiseAlertInput(BaseModel):
    """An alert about one operation (not a Monitor condition): open until acknowledged."""

    condition: str
    message: str
    reference: str
    severity: str = "critical"
    #: the tenant whose operation it is (its admin sees the alert); None: the platform's
    tenant: str | None = None


class RecordStkPushInput(BaseModel):
    deposit_id: str
    merchant_request_id: str
    checkout_request_id: str


class DepositOutcomeInput(BaseModel):
    """A status change to persist on the deposit row."""

    deposit_id: str
    status: DepositStatus
    result_code: int | None = None
    result_desc: str | None = None
    receipt: str | None = None
    failure_reason: str | None = None


class CreditDepositInput(BaseModel):
    deposit_id: str
    checkout_request_id: str
    receipt: str | None
    result_desc: str = ""
    #: set when the USDC leg ran: the portfolio is credited in USDC, not KES
    usdc_minor: int | None = None
    fx_kes_per_usdc: str | None = None
    usdc_tx_hash: str | None = None


class RecordConversionInput(BaseModel):
    """The on-chain leg's progress, kept on the deposit row."""

    deposit_id: str
    wallet_address: str
    usdc_minor: int
    fx_kes_per_usdc: str
    usdc_tx_hash: str | None = None
    #: the deposit's Transfer log, when its transaction is a batch shared with other deposits
    usdc_log_index: int | None = None


class CreditDepositResult(BaseModel):
    entry_id: str
    idempotency_key: str
    already_credited: bool
    balance_minor: int


# --- what the workflow reports ----------------------------------------------------------------


class MpesaDepositState(BaseModel):
    """Answer of the ``status`` query, and the workflow's result."""

    deposit_id: str
    status: DepositStatus = DepositStatus.INITIATED
    step: DepositStep = DepositStep.STK_PUSH
    checkout_request_id: str | None = None
    receipt: str | None = None
    result_code: int | None = None
    result_desc: str | None = None
    failure_reason: str | None = None
    error: str | None = None
    credited_entry_id: str | None = None
    wallet_address: str | None = None
    usdc_minor: int | None = None
    fx_kes_per_usdc: str | None = None
    usdc_tx_hash: str | None = None
    usdc_block: int | None = None
    #: paid in a batch (PAYOUT_BATCH_ENABLED): the deposit's Transfer log in the shared transaction
    usdc_log_index: int | None = None
    usdc_batch_size: int | None = None
    #: why the batcher did not pay it (``alone``: the only one; else the batch's failure): the
    #: transfer went out on its own
    usdc_batch_fallback: str | None = None
    queries_made: int = 0
    merchant_request_id: str | None = None
    #: STK pushes sent (a push whose answer was lost is resolved, not repeated blindly)
    pushes_sent: int = 0
    #: the quote of the initiation, and when M-Pesa's answer came (the FX window is judged on it)
    fx_quote_kes_per_usdc: str | None = None
    paid_at: datetime | None = None
    #: what confirmed the payment: ``stk_query`` and ``transaction_status``
    confirmed_by: list[str] = Field(default_factory=list)
    duplicate_callbacks: int = 0
    #: an operator asked to cancel after the customer was prompted; the deposit went on
    cancel_refused: bool = False
    updated_at: datetime | None = None
