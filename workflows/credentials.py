"""``CredentialAnchor`` (``credential-anchor-<tenant>-<id>``): anchor a credential's data hash and
IPFS CID on the CredentialRegistry, through the wallet writer, and keep its status.

Submitting gets 3 attempts, exponential from 5 s (``CREDENTIAL_ANCHOR_*``); the transaction then
waits for its confirmations like every treasury transaction. A revert (for instance the id was
anchored before by hand) or exhausted attempts make the credential ``failed`` with the error.

Since patch ``credential-anchor-cancel-and-retry``: before a failure is reported, the wallet
writer settles the attempt's transaction (``evm.cancel``): one not mined yet is replaced by a
0-value self-transfer of the same nonce, so it can never land later unnoticed; one that was mined
after all makes the anchor ``confirmed`` (the status follows it). A failed anchor then parks
(``needs_attention``): ``retry`` sends a new transaction under the next attempt's key, ``abandon``
leaves it failed.
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
    anchor_tx_key,
)
from domain.errors import NON_RETRYABLE
from domain.events import EventType
from domain.evm import AwaitTxInput, CancelOutcome, CancelTxInput, SubmittedTx, TxReceipt
from domain.queues import ActivityQueue, Routed
from domain.search import OperationStatus
from workflows import policies
from workflows.dead_letter import Decision, Parkable, set_status
from workflows.events import emit
from workflows.failures import cause_message, reraise_if_cancelled
from workflows.refs import add_refs

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


async def settle_anchor_tx(request: AnchorInput | BatcherInput, key: str) -> CancelOutcome:
    """Make sure the transaction under ``key`` cannot land later unnoticed: cancelled (same
    nonce, 0-value self-transfer), or reported as mined. Keeps resuming like a confirmation wait."""
    config = request.config
    return await workflow.execute_activity_method(
        EvmWriteActivities.cancel,
        CancelTxInput(
            idempotency_key=key,
            confirmations=config.confirmations,
            use_safe_tag=config.use_safe_tag,
        ),
        task_queue=request.queue(ActivityQueue.EVM_WRITE),
        start_to_close_timeout=timedelta(seconds=config.confirmation_timeout_seconds),
        heartbeat_timeout=timedelta(seconds=60),
        retry_policy=policies.EVM_CONFIRMATIONS,
    )


#: a failed anchor's transaction is cancelled (or followed), then the anchor parks for retry
CANCEL_AND_RETRY_PATCH = "credential-anchor-cancel-and-retry"
#: confirmed and failed anchors are pushed to the tenant's endpoints and the callback_url
ANCHOR_EVENTS_PATCH = "credential-anchor-events"
#: a record the database refuses for good parks the anchor (it failed the workflow before)
RECORD_PARKS_PATCH = "credential-anchor-record-parks"


@workflow.defn(name="CredentialAnchor")
class CredentialAnchor(Parkable):
    def __init__(self) -> None:
        super().__init__()
        self._outcome: AnchorOutcome | None = None
        self._request: AnchorInput | None = None

    @workflow.query
    def status(self) -> AnchorOutcome | None:
        return self._outcome

    @workflow.run
    async def run(self, request: AnchorInput) -> AnchorOutcome:
        if workflow.patched(CANCEL_AND_RETRY_PATCH):
            return await self._run_with_retries(request)
        return await self._run_v1(request)

    async def _run_with_retries(self, request: AnchorInput) -> AnchorOutcome:
        self._request = request
        add_refs(request.credential_id, request.data_hash)
        attempt = request.attempt
        outcome: AnchorOutcome | None = None
        if attempt > 1:  # an earlier run failed: its transaction must not land behind our back
            outcome = await self._settled(
                request, anchor_tx_key(request.credential_key, attempt - 1)
            )
        if outcome is None:
            outcome = await self._attempt(request, attempt)
        while True:
            self._outcome = outcome
            add_refs(outcome.tx_hash)
            await self._record(request, outcome)
            if outcome.status is AnchorStatus.CONFIRMED:
                set_status(OperationStatus.SUCCEEDED)
                await self._emit(request, EventType.CREDENTIAL_CONFIRMED, outcome, attempt)
                return outcome
            await self._emit(request, EventType.CREDENTIAL_FAILED, outcome, attempt)
            if await self.park(outcome.error or "anchor failed") is Decision.ABANDON:
                outcome = outcome.model_copy(
                    update={"error": f"abandoned: {self.abandon_reason} (after: {outcome.error})"}
                )
                self._outcome = outcome
                await self._record(request, outcome)
                set_status(OperationStatus.ABANDONED)
                return outcome
            attempt += 1
            pending = AnchorOutcome(
                credential_key=request.credential_key, status=AnchorStatus.PENDING
            )
            self._outcome = pending
            await self._record(request, pending)
            outcome = await self._attempt(request, attempt)

    async def _attempt(self, request: AnchorInput, attempt: int) -> AnchorOutcome:
        """One transaction under the attempt's key: confirmed, or failed once its transaction is
        settled (cancelled, or followed to its block when it was mined after all)."""
        key = anchor_tx_key(request.credential_key, attempt)
        tx_hash: str | None = None
        try:
            submitted = await submit_anchor(request, key, request.registry, request.calldata)
            tx_hash = submitted.tx_hash
            add_refs(tx_hash)
            self._outcome = AnchorOutcome(
                credential_key=request.credential_key,
                status=AnchorStatus.PENDING,
                tx_hash=tx_hash,
            )
            receipt = await await_anchor(request, key)
            return AnchorOutcome(
                credential_key=request.credential_key,
                status=AnchorStatus.CONFIRMED,
                tx_hash=receipt.tx_hash,
                block_number=receipt.block_number,
            )
        except ActivityError as err:
            reraise_if_cancelled(err)
            error = cause_message(err)
        landed = await self._settled(request, key)
        if landed is not None:
            return landed
        return AnchorOutcome(
            credential_key=request.credential_key,
            status=AnchorStatus.FAILED,
            tx_hash=tx_hash,
            error=f"anchor failed: {error}",
        )

    async def _settled(self, request: AnchorInput, key: str) -> AnchorOutcome | None:
        """The confirmed outcome when the transaction under ``key`` was mined after all and did
        not revert; None when it was cancelled, reverted or never sent."""
        settled = await settle_anchor_tx(request, key)
        if settled.outcome == "landed" and settled.receipt is not None:
            workflow.logger.warning("a failed anchor's transaction landed: %s", settled.tx_hash)
            return AnchorOutcome(
                credential_key=request.credential_key,
                status=AnchorStatus.CONFIRMED,
                tx_hash=settled.receipt.tx_hash,
                block_number=settled.receipt.block_number,
            )
        if settled.outcome == "cancelled":
            workflow.logger.info("cancelled nonce %s with %s", settled.nonce, settled.tx_hash)
        return None

    def event_scope(self) -> tuple[Routed, str] | None:
        return (self._request, self._request.tenant) if self._request else None

    async def _emit(
        self, request: AnchorInput, event_type: EventType, outcome: AnchorOutcome, attempt: int
    ) -> None:
        """Push the anchor's outcome to the tenant's endpoints and the request's callback_url
        (anchors from before: nothing). Each failed attempt is an event of its own."""
        if not workflow.patched(ANCHOR_EVENTS_PATCH):
            return
        subject = request.credential_key
        if event_type is EventType.CREDENTIAL_FAILED:
            subject = f"{subject}:{attempt}"
        await emit(
            request,
            request.tenant,
            event_type,
            subject,
            {
                "credential_id": request.credential_id,
                "credential_key": request.credential_key,
                "status": outcome.status.value,
                "tx_hash": outcome.tx_hash,
                "block_number": outcome.block_number,
                "error": outcome.error,
            },
            callbacks=request.callback_endpoint_ids,
        )

    async def _record(self, request: AnchorInput, outcome: AnchorOutcome) -> None:
        """Keep the outcome on the anchor's row; a refused write parks (the anchor may be on
        chain already: failing would leave the row saying otherwise, unseen)."""
        await self.refused_write_parks(
            lambda: workflow.execute_activity_method(
                CredentialActivities.record,
                outcome,
                task_queue=request.queue(ActivityQueue.DB),
                start_to_close_timeout=policies.DB_TIMEOUT,
                retry_policy=policies.DB_BOOKKEEPING,
            ),
            "recording the anchor",
            RECORD_PARKS_PATCH,
        )

    async def _run_v1(self, request: AnchorInput) -> AnchorOutcome:
        """The shape before failed anchors were cancelled and retried (recorded histories)."""
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
