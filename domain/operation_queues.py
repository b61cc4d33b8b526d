"""Which activity task queues each operation kind schedules on (as its workflows do).

A queue in the operations API is an operation kind and these task queues. Activity queues are per
external system, so several kinds share some of them (``db`` above all): pausing a kind holds
every activity on its queues, whichever kind scheduled it. Keep it in step
with the ``request.queue(ActivityQueue...)`` calls in workflows/.
"""

from __future__ import annotations

from domain.queues import ActivityQueue
from domain.search import OperationKind

KIND_QUEUES: dict[OperationKind, tuple[ActivityQueue, ...]] = {
    OperationKind.MPESA_DEPOSIT: (
        ActivityQueue.MPESA,
        ActivityQueue.DB,
        ActivityQueue.FX,
        ActivityQueue.EVM_WRITE,
    ),
    OperationKind.DEPOSIT_WATCH: (ActivityQueue.EVM_READ, ActivityQueue.DB),
    OperationKind.CHAIN_SCANNER: (ActivityQueue.EVM_READ, ActivityQueue.DB),
    OperationKind.TICKET_PURCHASE: (
        ActivityQueue.STRIPE,
        ActivityQueue.SOLANA,
        ActivityQueue.NOTIFY,
        ActivityQueue.DB,
    ),
    OperationKind.TICKET_REFUND: (ActivityQueue.STRIPE, ActivityQueue.NOTIFY, ActivityQueue.DB),
    OperationKind.NFT_TRANSFER: (ActivityQueue.SOLANA, ActivityQueue.NOTIFY, ActivityQueue.DB),
    OperationKind.CREDENTIAL_ANCHOR: (
        ActivityQueue.CREDENTIALS,
        ActivityQueue.EVM_WRITE,
        ActivityQueue.DB,
    ),
    OperationKind.VERIFICATION: (
        ActivityQueue.VERIFICATION,
        ActivityQueue.IPFS,
        ActivityQueue.EVM_READ,
        ActivityQueue.DB,
    ),
    OperationKind.PROOF: (
        ActivityQueue.VERIFICATION,
        ActivityQueue.IPFS,
        ActivityQueue.EVM_READ,
        ActivityQueue.DB,
    ),
}


def sharing(kind: OperationKind) -> list[OperationKind]:
    """Other kinds with an activity queue in common with ``kind``: pausing it holds them too."""
    mine = set(KIND_QUEUES[kind])
    return [k for k, queues in KIND_QUEUES.items() if k != kind and mine & set(queues)]
