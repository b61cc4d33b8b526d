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
from domain.events import EventType
from domain.queues import ActivityQueue
from workflows import policies
from workflows.credentials import await_anchor, settle_anchor_tx, submit_anchor
from workflows.dead_letter import StepVisibility
from workflows.events import emit_many, event_input
from workflows.failures import cause_message

with workflow.unsafe.imports_passed_through():
    from activities.credentials import CredentialActivities

#: batches per run before continuing as new
BATCHES_PER_RUN = 20


#: a failed batch's transaction is cancelled (or followed) before the failure is recorded
BATCH_CANCEL_PATCH = "anchor-batcher-cancels-failed-tx"
#: each credential of a recorded batch emits credential.confirmed / credential.failed
BATCH_EVENTS_PATCH = "anchor-batcher-events"


def batch_tag(outcome: BatchOutcome) -> str:
    """A failed batch's mark in its events' keys: the root's first 64 bits (a key holds 150
    characters, and the full root with the credential key would not fit)."""
    return f"batch-{outcome.root.removeprefix('0x')[:16]}"


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
        if workflow.patched(BATCH_EVENTS_PATCH):
            await self._emit(request, outcome)

    async def _emit(self, request: BatcherInput, outcome: BatchOutcome) -> None:
        """One event per credential, to its own tenant's endpoints, as a single anchor's: a
        confirmed credential is confirmed once (``credential.confirmed:<key>``); a failed batch
        is an event per credential and batch (the credential may be batched again)."""
        members = await workflow.execute_activity_method(
            CredentialActivities.batch_members,
            outcome.keys,
            task_queue=request.queue(ActivityQueue.DB),
            start_to_close_timeout=policies.DB_TIMEOUT,
            retry_policy=policies.DB_BOOKKEEPING,
        )
        confirmed = outcome.status is AnchorStatus.CONFIRMED
        event_type = EventType.CREDENTIAL_CONFIRMED if confirmed else EventType.CREDENTIAL_FAILED
        events = [
            event_input(
                request,
                member.tenant,
                event_type,
                member.credential_key
                if confirmed
                else f"{member.credential_key}:{batch_tag(outcome)}",
                {
                    "credential_id": member.credential_id,
                    "credential_key": member.credential_key,
                    "status": outcome.status.value,
                    "tx_hash": outcome.tx_hash,
                    "block_number": outcome.block_number,
                    "error": outcome.error,
                    "batch_root": outcome.root,
                },
            )
            for member in members
        ]
        await emit_many(request, events)
