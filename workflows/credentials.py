"""``CredentialAnchor`` (``credential-anchor-<tenant>-<id>``): anchor a credential's data hash and
IPFS CID on the CredentialRegistry, through the wallet writer, and keep its status.

Submitting gets 3 attempts, exponential from 5 s (``CREDENTIAL_ANCHOR_*``); the transaction then
waits for its confirmations like every treasury transaction. A revert (for instance the id was
anchored before by hand) or exhausted attempts end the credential as ``failed`` with the error.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from domain.credentials import (
    AnchorInput,
    AnchorOutcome,
    AnchorStatus,
    AnchorSubmitInput,
    BatcherInput,
)
from domain.errors import NON_RETRYABLE
from domain.evm import AwaitTxInput, SubmittedTx, TxReceipt
from domain.queues import ActivityQueue
from domain.search import OperationStatus
from workflows import policies
from workflows.dead_letter import set_status
from workflows.mpesa_deposit import cause_message, reraise_if_cancelled

with workflow.unsafe.imports_passed_through():
    from activities.credentials import CredentialActivities
    from activities.evm import EvmWriteActivities


async def submit_anchor(
    request: AnchorInput | BatcherInput, key: str, registry: str, calldata: str
) -> SubmittedTx:
    """The registry call through the wallet writer, on the rate-limited ``credentials`` queue:
    ``max_attempts`` tries, exponential from ``retry_initial_seconds``."""
    config = request.config
    return await workflow.execute_activity_method(
        CredentialActivities.submit_anchor,
        AnchorSubmitInput(idempotency_key=key, registry=registry, calldata=calldata),
        task_queue=request.queue(ActivityQueue.CREDENTIALS),
        start_to_close_timeout=timedelta(seconds=60),
        retry_policy=RetryPolicy(
            initial_interval=timedelta(seconds=config.retry_initial_seconds),
            backoff_coefficient=2.0,
            maximum_attempts=config.max_attempts,
            non_retryable_error_types=list(NON_RETRYABLE),
        ),
    )


async def await_anchor(request: AnchorInput | BatcherInput, key: str) -> TxReceipt:
    """Until the anchoring transaction has its confirmations, like every treasury transaction."""
    config = request.config
    return await workflow.execute_activity_method(
        EvmWriteActivities.await_confirmations,
        AwaitTxInput(
            idempotency_key=key,
            confirmations=config.confirmations,
            use_safe_tag=config.use_safe_tag,
        ),
        task_queue=request.queue(ActivityQueue.EVM_WRITE),
        start_to_close_timeout=timedelta(seconds=config.confirmation_timeout_seconds),
        heartbeat_timeout=timedelta(seconds=60),
        retry_policy=policies.EVM_CONFIRMATIONS,
    )


@workflow.defn(name="CredentialAnchor")
class CredentialAnchor:
    def __init__(self) -> None:
        self._outcome: AnchorOutcome | None = None

    @workflow.query
    def status(self) -> AnchorOutcome | None:
        return self._outcome

    @workflow.run
    async def run(self, request: AnchorInput) -> AnchorOutcome:
        key = f"credential:{request.credential_key}"
        try:
            submitted = await submit_anchor(request, key, request.registry, request.calldata)
            self._outcome = AnchorOutcome(
                credential_key=request.credential_key,
                status=AnchorStatus.PENDING,
                tx_hash=submitted.tx_hash,
            )
            receipt = await await_anchor(request, key)
            self._outcome = AnchorOutcome(
                credential_key=request.credential_key,
                status=AnchorStatus.CONFIRMED,
                tx_hash=receipt.tx_hash,
                block_number=receipt.block_number,
            )
        except ActivityError as err:
            reraise_if_cancelled(err)
            self._outcome = AnchorOutcome(
                credential_key=request.credential_key,
                status=AnchorStatus.FAILED,
                tx_hash=self._outcome.tx_hash if self._outcome else None,
                error=cause_message(err),
            )
        await workflow.execute_activity_method(
            CredentialActivities.record,
            self._outcome,
            task_queue=request.queue(ActivityQueue.DB),
            start_to_close_timeout=policies.DB_TIMEOUT,
            retry_policy=policies.DB_BOOKKEEPING,
        )
        set_status(
            OperationStatus.SUCCEEDED
            if self._outcome.status is AnchorStatus.CONFIRMED
            else OperationStatus.FAILED
        )
        return self._outcome
