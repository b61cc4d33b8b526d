"""``AnchorBatcher`` (``anchor-batcher-<prefix>``): one per deployment. Credentials in batch mode
are signalled to it (``add``, signal-with-start); it anchors up to ``max_size`` of them, or what
arrived within ``max_wait_seconds`` of the first, as one Merkle root per transaction, and records
each credential's proof. Continues as new every few batches to keep its history small.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

from domain.credentials import (
    AnchorStatus,
    BatcherInput,
    BatchOutcome,
)
from domain.queues import ActivityQueue
from workflows import policies
from workflows.credentials import await_anchor, settle_anchor_tx, submit_anchor
from workflows.dead_letter import StepVisibility
from workflows.failures import cause_message

with workflow.unsafe.imports_passed_through():
    from activities.credentials import CredentialActivities

#: batches per run before continuing as new
BATCHES_PER_RUN = 20


#: a failed batch's transaction is cancelled (or followed) before the failure is recorded
BATCH_CANCEL_PATCH = "anchor-batcher-cancels-failed-tx"


@workflow.defn(name="AnchorBatcher")
class AnchorBatcher(StepVisibility):
    def __init__(self) -> None:
        self._pending: list[str] = []
        #: settings sent with the latest credentials (``add_with_settings``): from the next batch
        #: on they replace the ones this run started with, so a changed registry address, batch
        #: size or wait reaches a batcher that is already running
        self._settings: BatcherInput | None = None

    @workflow.signal
    def add(self, credential_key: str) -> None:
        if credential_key not in self._pending:
            self._pending.append(credential_key)

    @workflow.signal
    def add_many(self, credential_keys: list[str]) -> None:
        for key in credential_keys:
            self.add(key)

    @workflow.signal
    def add_with_settings(self, credential_keys: list[str], settings: BatcherInput) -> None:
        self._settings = settings
        self.add_many(credential_keys)

    @workflow.query
    def waiting(self) -> list[str]:
        return list(self._pending)

    def _current(self, started_with: BatcherInput) -> BatcherInput:
        return self._settings or started_with

    @workflow.run
    async def run(self, request: BatcherInput) -> None:
        for key in request.carried:
            self.add(key)
        for _ in range(BATCHES_PER_RUN):
            await workflow.wait_condition(lambda: bool(self._pending))
            # N credentials, or T seconds since the first: anchor what there is
            settings = self._current(request)
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: len(self._pending) >= self._current(request).max_size,
                    timeout=timedelta(seconds=settings.max_wait_seconds),
                )
            settings = self._current(request)
            keys, self._pending = (
                self._pending[: settings.max_size],
                self._pending[settings.max_size :],
            )
            await self._anchor(settings, keys)
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(
            self._current(request).model_copy(update={"carried": list(self._pending)})
        )

    async def _anchor(self, request: BatcherInput, keys: list[str]) -> None:
        """One root per transaction. A batch whose transaction fails is reported failed only
        once that transaction is cancelled (same nonce, 0-value self-transfer) or, when it was
        mined after all, as confirmed."""
        prepared = await workflow.execute_activity_method(
            CredentialActivities.prepare_batch,
            keys,
            task_queue=request.queue(ActivityQueue.DB),
            start_to_close_timeout=policies.DB_TIMEOUT,
            retry_policy=policies.DB_BOOKKEEPING,
        )
        if not prepared.keys:
            return  # all of them were settled already
        tx_key = f"credential-batch:{prepared.root}"
        outcome = BatchOutcome(root=prepared.root, keys=prepared.keys, status=AnchorStatus.PENDING)
        try:
            submitted = await submit_anchor(request, tx_key, request.registry, prepared.calldata)
            outcome.tx_hash = submitted.tx_hash
            receipt = await await_anchor(request, tx_key)
            outcome.status = AnchorStatus.CONFIRMED
            outcome.tx_hash, outcome.block_number = receipt.tx_hash, receipt.block_number
        except ActivityError as err:
            outcome.status, outcome.error = AnchorStatus.FAILED, cause_message(err)
            if workflow.patched(BATCH_CANCEL_PATCH):
                # never report failure while its transaction could still land
                settled = await settle_anchor_tx(request, tx_key)
                if settled.outcome == "landed" and settled.receipt is not None:
                    outcome.status, outcome.error = AnchorStatus.CONFIRMED, None
                    outcome.tx_hash = settled.receipt.tx_hash
                    outcome.block_number = settled.receipt.block_number
        await workflow.execute_activity_method(
            CredentialActivities.record_batch,
            outcome,
            task_queue=request.queue(ActivityQueue.DB),
            start_to_close_timeout=policies.DB_TIMEOUT,
            retry_policy=policies.DB_BOOKKEEPING,
        )
