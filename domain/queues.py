"""Task-queue names.

Workflows run on one queue; activities run on queues named after the system they call, so a
provider's rate limit, concurrency and pause apply to it alone. Every name carries a prefix from
settings (``TASK_QUEUE_PREFIX``) so that several deployments, or tests, can share one namespace.

Workflow inputs carry the prefix (:class:`Routed`): workflow code cannot read settings, and the
replayer runs workflows on a task queue of its own, so the prefix cannot be derived at run time.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel

WORKFLOW_SUFFIX = "workflows"
#: the default of the TASK_QUEUE_PREFIX setting
DEFAULT_PREFIX = "settle-"


class ActivityQueue(StrEnum):
    MPESA = "mpesa"
    EVM_WRITE = "evm-write"
    EVM_READ = "evm-read"
    SOLANA = "solana"
    STRIPE = "stripe"
    NOTIFY = "notify"
    IPFS = "ipfs"
    FX = "fx"
    DB = "db"
    CREDENTIALS = "credentials"
    #: hashing uploads: its workers must share VERIFICATION_UPLOAD_DIR with the API
    VERIFICATION = "verification"


def workflow_queue(prefix: str) -> str:
    return f"{prefix}{WORKFLOW_SUFFIX}"


def activity_queue_for_prefix(prefix: str, system: ActivityQueue) -> str:
    return f"{prefix}{system.value}"


class Routed(BaseModel):
    """Base of workflow inputs: where the workflow's activities are to be scheduled."""

    task_queue_prefix: str = DEFAULT_PREFIX

    def queue(self, system: ActivityQueue) -> str:
        return activity_queue_for_prefix(self.task_queue_prefix, system)


def all_queue_names() -> list[str]:
    """Short names accepted by ``worker.py --queues``."""
    return [WORKFLOW_SUFFIX, *(q.value for q in ActivityQueue)]


class RateLimitKey(StrEnum):
    """Providers whose activity queue carries a server-side rate limit of its own."""

    STRIPE = "stripe"
    MPESA = "mpesa"
    SOLANA = "solana"
    EVM_WRITE = "evm-write"
    SMTP = "smtp"


#: the activity queue each rate-limit key governs (email goes out from the notify queue)
RATE_LIMITED_QUEUES: dict[RateLimitKey, ActivityQueue] = {
    RateLimitKey.STRIPE: ActivityQueue.STRIPE,
    RateLimitKey.MPESA: ActivityQueue.MPESA,
    RateLimitKey.SOLANA: ActivityQueue.SOLANA,
    RateLimitKey.EVM_WRITE: ActivityQueue.EVM_WRITE,
    RateLimitKey.SMTP: ActivityQueue.NOTIFY,
}
