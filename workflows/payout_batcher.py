"""``PayoutBatcher`` (``payout-batcher-<prefix>``): one per deployment, like ``AnchorBatcher``.

M-Pesa deposits with ``PAYOUT_BATCH_ENABLED`` join it (``add_with_settings``, signal-with-start
from ``payouts.join_batch``) with their recipient, amount and transfer key. It waits
``max_wait_seconds`` after the first (or ``max_size`` members), then pays them all in one
``Disperse.disperse(usdc, recipients, amounts)`` from the treasury through the wallet writer
(idempotency key from the members: a retried submit is the same transaction), waits for its
confirmations, reads each member's Transfer log and signals every deposit its answer.

A batch that fails (gas estimate or mined revert: an allowance revoked, a recipient the token
refuses, a short treasury; or a submit that keeps failing) is first made sure never to land
(``evm.cancel``: cancelled, reverted, or found mined after all and then treated as paid); only
then is each member told to send its transfer itself. So every deposit is paid exactly once:
by the batch or by its own transfer, never both. A lone member is told at once (a transfer of
its own costs less gas than a batch of one).
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from domain.errors import NON_RETRYABLE
from domain.evm import AwaitTxInput, CancelTxInput, SubmitTxInput, TxReceipt
from domain.mpesa import RaiseAlertInput
from domain.payouts import (
    ANSWER_SIGNAL,
    BatchTransfer,
    BatchTransfersInput,
    PayoutAnswer,
    PayoutBatchConfig,
    PayoutBatcherInput,
    PayoutMember,
    approve_calldata,
    approve_key,
    batch_key,
    disperse_calldata,
    match_transfers,
)
from domain.queues import ActivityQueue
from workflows import policies
from workflows.dead_letter import StepVisibility
from workflows.failures import cause_message

with workflow.unsafe.imports_passed_through():
    from activities.deposits import DepositActivities
    from activities.evm import EvmWriteActivities
    from activities.payouts import PayoutActivities

#: the platform alert raised when a batch fails and its payouts go out one by one
BATCH_FAILED_ALERT = "payout_batch_failed"
#: batches per run before continuing as new
BATCHES_PER_RUN = 20
#: deposits taken lately, carried into the next run: a join retried across continue-as-new
#: (the activity's signal landed, its answer was lost) is not paid twice
RECENT_KEPT = 2000


class _BatchFailed(Exception):
    """The batch transaction is settled as never landing: members are sent alone."""


@workflow.defn(name="PayoutBatcher")
class PayoutBatcher(StepVisibility):
    def __init__(self) -> None:
        self._pending: list[PayoutMember] = []
        #: deposits answered or in a batch during this run: a repeated join is not paid twice
        self._taken: set[str] = set()
        self._settings: PayoutBatchConfig | None = None
        self._recent: list[str] = []

    @workflow.signal
    def add_with_settings(self, member: PayoutMember, config: PayoutBatchConfig) -> None:
        self._settings = config
        self._add(member)

    def _add(self, member: PayoutMember) -> None:
        if member.deposit_id in self._taken:
            return
        if all(m.deposit_id != member.deposit_id for m in self._pending):
            self._pending.append(member)

    @workflow.query
    def waiting(self) -> list[str]:
        return [m.deposit_id for m in self._pending]

    @workflow.run
    async def run(self, request: PayoutBatcherInput) -> None:
        self._request = request
        self._approved_for = request.approved_for
        self._taken.update(request.recent)
        self._recent = list(request.recent)
        for member in request.carried:
            self._add(member)
        for _ in range(BATCHES_PER_RUN):
            await workflow.wait_condition(lambda: bool(self._pending))
            config = self._config()
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: len(self._pending) >= self._config().max_size,
                    timeout=timedelta(seconds=config.max_wait_seconds),
                )
            config = self._config()
            members = self._pending[: config.max_size]
            self._pending = self._pending[config.max_size :]
            self._taken.update(m.deposit_id for m in members)
            self._recent = [*self._recent, *(m.deposit_id for m in members)][-RECENT_KEPT:]
            await self._pay(config, members)
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(
            request.model_copy(
                update={
                    "config": self._config(),
                    "carried": list(self._pending),
                    "approved_for": self._approved_for,
                    "recent": self._recent,
                }
            )
        )

    def _config(self) -> PayoutBatchConfig:
        return self._settings or self._request.config

    async def _pay(self, config: PayoutBatchConfig, members: list[PayoutMember]) -> None:
        key = batch_key(members)
        if len(members) < 2:
            await self._answer(members, PayoutAnswer(paid=False, batch_key=key, error="alone"))
            return
        try:
            await self._approve(config)
            receipt = await self._send(config, key, members)
        except _BatchFailed as failed:
            workflow.logger.warning("payout batch failed: paid one by one", extra={"key": key})
            await self._alert(key, len(members), str(failed))
            await self._answer(members, PayoutAnswer(paid=False, batch_key=key, error=str(failed)))
            return
        transfers: list[BatchTransfer] = await workflow.execute_activity_method(
            PayoutActivities.batch_transfers,
            BatchTransfersInput(tx_hash=receipt.tx_hash, token=config.usdc_address),
            task_queue=self._request.queue(ActivityQueue.EVM_WRITE),
            start_to_close_timeout=timedelta(seconds=config.provider_timeout_seconds),
            retry_policy=policies.EVM_CONFIRMATIONS,
        )
        matched = match_transfers(members, transfers)
        for member in members:
            log = matched.get(member.deposit_id)
            await self._answer(
                [member],
                PayoutAnswer(
                    paid=True,
                    batch_key=key,
                    tx_hash=receipt.tx_hash,
                    block_number=receipt.block_number,
                    log_index=log.log_index if log else None,
                    batch_size=len(members),
                ),
            )

    async def _approve(self, config: PayoutBatchConfig) -> None:
        """The treasury's one approval of the Disperse contract (a fixed key: sent once ever;
        later runs find it and only wait for it). Failing to approve fails the batch."""
        if self._approved_for == config.disperse_address.lower():
            return
        key = approve_key(config.disperse_address)
        try:
            calldata = approve_calldata(config.disperse_address)
            await self._submit(config, key, config.usdc_address, calldata, "payout_approve")
            await self._confirm(config, key)
        except ActivityError as err:
            raise _BatchFailed(f"approving Disperse failed: {cause_message(err)}") from err
        self._approved_for = config.disperse_address.lower()

    async def _send(
        self, config: PayoutBatchConfig, key: str, members: list[PayoutMember]
    ) -> TxReceipt:
        data = disperse_calldata(
            config.usdc_address,
            [m.recipient for m in members],
            [m.amount_minor for m in members],
        )
        try:
            await self._submit(config, key, config.disperse_address, data, "payout_batch")
            return await self._confirm(config, key)
        except ActivityError as err:
            error = cause_message(err)
        # never pay alone while the batch could still land
        settled = await workflow.execute_activity_method(
            EvmWriteActivities.cancel,
            CancelTxInput(
                idempotency_key=key,
                confirmations=config.confirmations,
                use_safe_tag=config.use_safe_tag,
            ),
            task_queue=self._request.queue(ActivityQueue.EVM_WRITE),
            start_to_close_timeout=timedelta(seconds=config.confirmation_timeout_seconds),
            heartbeat_timeout=timedelta(seconds=config.evm_heartbeat_timeout_seconds),
            retry_policy=policies.EVM_CONFIRMATIONS,
        )
        if settled.outcome == "landed" and settled.receipt is not None:
            return settled.receipt
        raise _BatchFailed(f"{error} ({settled.outcome})")

    async def _submit(
        self, config: PayoutBatchConfig, key: str, to: str, data: str, purpose: str
    ) -> None:
        await workflow.execute_activity_method(
            EvmWriteActivities.submit,
            SubmitTxInput(idempotency_key=key, to=to, data=data, purpose=purpose),
            task_queue=self._request.queue(ActivityQueue.EVM_WRITE),
            start_to_close_timeout=timedelta(seconds=config.provider_timeout_seconds),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=1),
                backoff_coefficient=2.0,
                maximum_interval=timedelta(seconds=30),
                maximum_attempts=config.evm_submit_max_attempts,
                non_retryable_error_types=list(NON_RETRYABLE),
            ),
        )

    async def _confirm(self, config: PayoutBatchConfig, key: str) -> TxReceipt:
        return await workflow.execute_activity_method(
            EvmWriteActivities.await_confirmations,
            AwaitTxInput(
                idempotency_key=key,
                confirmations=config.confirmations,
                use_safe_tag=config.use_safe_tag,
            ),
            task_queue=self._request.queue(ActivityQueue.EVM_WRITE),
            start_to_close_timeout=timedelta(seconds=config.confirmation_timeout_seconds),
            heartbeat_timeout=timedelta(seconds=config.evm_heartbeat_timeout_seconds),
            retry_policy=policies.EVM_CONFIRMATIONS,
        )

    async def _alert(self, key: str, size: int, error: str) -> None:
        """An operator should know: every batch failing (a revoked allowance, a short treasury)
        means paying full gas per deposit until it is fixed."""
        try:
            await workflow.execute_activity_method(
                DepositActivities.raise_alert,
                RaiseAlertInput(
                    condition=BATCH_FAILED_ALERT,
                    message=f"a payout batch of {size} failed, paid one by one: {error}",
                    reference=key,
                    severity="warning",
                ),
                task_queue=self._request.queue(ActivityQueue.DB),
                start_to_close_timeout=policies.DB_TIMEOUT,
                retry_policy=policies.DB_BEST_EFFORT,
            )
        except ActivityError:
            workflow.logger.warning("could not raise the alert in the database")

    async def _answer(self, members: list[PayoutMember], answer: PayoutAnswer) -> None:
        for member in members:
            handle = workflow.get_external_workflow_handle(member.workflow_id)
            try:
                await handle.signal(ANSWER_SIGNAL, answer)
            except Exception:
                # the deposit was terminated: nothing waits for the answer
                workflow.logger.warning(
                    "could not answer a payout", extra={"deposit": member.deposit_id}
                )
