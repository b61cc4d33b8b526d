"""ChainScanner: one per chain, the only poller. Reads USDC Transfer logs since its checkpoint,
records and matches them against open intents (in ``chain.scan``), and signals each matching
DepositWatch. Continues as new every ``rounds_per_run`` rounds so its history stays small.

Workflow ID ``chain-scanner-<task queue prefix><chain>``, e.g. ``chain-scanner-settle-base``.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import FailureError

from domain.deposit_watch import (
    ChainScannerInput,
    IntentMatch,
    MarkTransferInput,
    ScanInput,
    TransferStatus,
)
from domain.queues import ActivityQueue
from workflows import policies
from workflows.dead_letter import StepVisibility

with workflow.unsafe.imports_passed_through():
    from activities.chain import ChainReadActivities
    from activities.intents import IntentActivities


def workflow_id_for(chain: str, task_queue_prefix: str) -> str:
    """One scanner per chain and deployment: deployments sharing a namespace differ by prefix."""
    return f"chain-scanner-{task_queue_prefix}{chain}"


@workflow.defn(name="ChainScanner")
class ChainScanner(StepVisibility):
    def __init__(self) -> None:
        self._last_block: int | None = None
        self._signalled = 0

    @workflow.query
    def status(self) -> dict[str, int | None]:
        return {"last_block": self._last_block, "signalled": self._signalled}

    @workflow.run
    async def run(self, request: ChainScannerInput) -> None:
        config = request.config
        rounds = 0
        while rounds < config.rounds_per_run and not workflow.info().is_continue_as_new_suggested():
            result = await workflow.execute_activity_method(
                ChainReadActivities.scan,
                ScanInput(
                    chain=request.chain,
                    chain_id=request.chain_id,
                    usdc_address=request.usdc_address,
                    max_range=config.max_range,
                    reorg_window=config.reorg_window,
                    min_amount_minor=config.min_amount_minor,
                ),
                task_queue=request.queue(ActivityQueue.EVM_READ),
                start_to_close_timeout=policies.CHAIN_READ_TIMEOUT,
                heartbeat_timeout=policies.LIVENESS_HEARTBEAT,
                retry_policy=policies.CHAIN_READ,
            )
            self._last_block = result.to_block
            for match in result.matches:
                await self._signal(request, match)
            rounds += 1
            await workflow.sleep(timedelta(seconds=config.interval_seconds))
        workflow.continue_as_new(
            request.model_copy(update={"rounds_done": request.rounds_done + rounds})
        )

    async def _signal(self, request: ChainScannerInput, match: IntentMatch) -> None:
        """Tell the watch; a watch that has already ended gets its transfer recorded as late."""
        handle = workflow.get_external_workflow_handle(match.workflow_id)
        try:
            await handle.signal("transfer_seen", match.transfer)
            self._signalled += 1
        except FailureError:
            await workflow.execute_activity_method(
                IntentActivities.mark_transfer,
                MarkTransferInput(
                    intent_id=match.intent_id,
                    chain=request.chain,
                    transfer=match.transfer,
                    status=TransferStatus.LATE,
                ),
                task_queue=request.queue(ActivityQueue.DB),
                start_to_close_timeout=policies.DB_TIMEOUT,
                retry_policy=policies.DB_BOOKKEEPING,
            )
