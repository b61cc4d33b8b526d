"""Steps still failing, read from Temporal's ``describe``: the pending activities of a workflow,
their attempt and last failure (decoded with the payload codec). One reading for the jobs API,
the dead-letter listing and the Monitor (see :mod:`domain.retries`)."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.api.failure.v1 import Failure
from temporalio.client import Client, WorkflowExecutionDescription
from temporalio.exceptions import ApplicationError, FailureError

from runtime.failures import MESSAGE_MAX, trim_middle
from runtime.logging import get_logger
from runtime.redact import redact

log = get_logger("runtime.stuck_steps")

#: causes followed below a failure's own message
CAUSES = 3


@dataclass(frozen=True)
class StuckStep:
    activity_id: str
    activity_type: str
    #: Temporal's attempt number of the pending activity (the one running or waiting to run)
    attempt: int
    #: the last attempt's failure: ``"<ErrorType>: <message>"`` and its causes' messages
    last_error: str | None


async def failure_text(client: Client, failure: Failure) -> str:
    """A failure as one readable line, decrypted (the codec keeps messages in encoded
    attributes), redacted: its type and message, then its causes' messages."""
    try:
        error: BaseException | None = await client.data_converter.decode_failure(failure)
    except Exception as exc:  # a key that is gone, a failure of another shape
        log.info("failure not decodable", error=str(exc))
        return redact(failure.message)
    parts: list[str] = []
    while error is not None and len(parts) <= CAUSES:
        message = error.message if isinstance(error, FailureError) else str(error)
        kind = error.type if isinstance(error, ApplicationError) else None
        if message:
            parts.append(f"{kind}: {message}" if kind and not parts else message)
        error = error.__cause__
    return trim_middle(redact(" <- ".join(parts)), MESSAGE_MAX * 2)


async def stuck_steps(
    client: Client, description: WorkflowExecutionDescription, alert_after: int
) -> list[StuckStep]:
    """The pending activities that failed ``alert_after`` times or more and are retried."""
    stuck = []
    for pending in description.raw_description.pending_activities:
        if pending.attempt <= alert_after or not pending.HasField("last_failure"):
            continue
        stuck.append(
            StuckStep(
                activity_id=pending.activity_id,
                activity_type=pending.activity_type.name,
                attempt=pending.attempt,
                last_error=await failure_text(client, pending.last_failure),
            )
        )
    return stuck
