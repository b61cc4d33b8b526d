"""Batched USDC payouts (``PAYOUT_BATCH_ENABLED``): joining the batcher, reading a batch's logs.

``payouts.join_batch`` (queue ``db``, it only talks to Temporal) is the deposit's
signal-with-start of the deployment's ``PayoutBatcher``: workflow code cannot start another
workflow with a signal. ``payouts.batch_transfers`` (queue ``evm-write``, beside the writer that
sent the batch) reads the mined batch's Transfer logs out of the treasury, so each deposit is
credited with its own log and amount as the chain recorded them.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client

from domain.payouts import (
    JOIN_SIGNAL,
    BatchTransfer,
    BatchTransfersInput,
    JoinPayoutBatch,
    PayoutBatcherInput,
)
from domain.queues import workflow_queue
from providers.evm import EvmClient, decode_transfer


def batcher_id(prefix: str) -> str:
    return f"payout-batcher-{prefix.rstrip('-')}"


class PayoutActivities:
    def __init__(self, client: Client, evm: EvmClient, treasury: str) -> None:
        self._client = client
        self._evm = evm
        self._treasury = treasury

    @activity.defn(name="payouts.join_batch")
    async def join_batch(self, request: JoinPayoutBatch) -> str:
        """Signal-with-start: the first payout starts the batcher; the settings go with every
        member, so a running batcher follows changed ones from its next batch on. A retry
        signals again: the batcher keeps one place per deposit."""
        prefix = request.task_queue_prefix
        batcher = PayoutBatcherInput(config=request.config, task_queue_prefix=prefix)
        handle = await self._client.start_workflow(
            "PayoutBatcher",
            batcher,
            id=batcher_id(prefix),
            task_queue=workflow_queue(prefix),
            start_signal=JOIN_SIGNAL,
            start_signal_args=[request.member, request.config],
        )
        return handle.id

    @activity.defn(name="payouts.batch_transfers")
    async def batch_transfers(self, request: BatchTransfersInput) -> list[BatchTransfer]:
        """The USDC Transfer logs from the treasury in a mined transaction, in log order."""
        receipt = await self._evm.receipt(request.tx_hash)
        if receipt is None:
            # the batcher asks after the confirmations: a node that lost it is retried
            raise RuntimeError(f"no receipt for {request.tx_hash} yet")
        transfers = []
        for log in receipt.get("logs") or []:
            transfer = decode_transfer(log)
            if (
                transfer is not None
                and transfer.token.lower() == request.token.lower()
                and transfer.sender.lower() == self._treasury.lower()
            ):
                transfers.append(
                    BatchTransfer(
                        recipient=transfer.recipient,
                        amount_minor=transfer.amount,
                        log_index=transfer.log_index,
                    )
                )
        return transfers
