"""What a failed workflow start means for the row written before it.

Every operation writes its row, then starts its workflow; when the start fails, the row is removed
only if no workflow can have started. An error on start does not say that: a DEADLINE_EXCEEDED (or
CANCELLED, UNKNOWN, INTERNAL) can come back after the server created the workflow, which then runs
(an STK push goes out) for a row that would be gone. So:

- the client never connected (the lazy client's first connection failed): nothing was sent;
- a transport failure (UNAVAILABLE) or the server's own refusal (INVALID_ARGUMENT,
  RESOURCE_EXHAUSTED, ...), and ``describe`` confirms there is no workflow under that id;

and only then "nothing started". Otherwise the row stays, the start is sent once more (starts are
idempotent by workflow id), and the caller answers as if it had started (202).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from runtime.logging import get_logger
from runtime.temporal import temporal_unreachable

log = get_logger("api.workflow_starts")

#: the request did not reach the server, or the server refused it before doing anything
_NOTHING_DONE = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.INVALID_ARGUMENT,
        RPCStatusCode.PERMISSION_DENIED,
        RPCStatusCode.UNAUTHENTICATED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.FAILED_PRECONDITION,
        RPCStatusCode.UNIMPLEMENTED,
    }
)


def never_connected(error: BaseException) -> bool:
    return isinstance(error, RuntimeError) and "client connect" in str(error)


async def _absent(client: Client, workflow_id: str) -> bool:
    """True only when Temporal answers that no workflow has this id."""
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        return exc.status == RPCStatusCode.NOT_FOUND
    except RuntimeError:
        return False
    return False


async def nothing_started(
    client: Client,
    workflow_id: str,
    error: BaseException,
    *,
    retry: Callable[[], Awaitable[Any]] | None = None,
    absent: Callable[[], Awaitable[bool]] | None = None,
) -> bool:
    """After ``error`` from starting ``workflow_id``: True when no workflow can have started (the
    caller removes its row and answers 503). False when one may have: the row must stay; ``retry``
    (the same start) is sent once more so that a start that did not go through goes through now.
    Errors that are not Temporal's are raised again. ``absent`` replaces the ``describe`` check
    where a start is a signal-with-start to a workflow that runs anyway (it confirms the signal
    did not arrive)."""
    if not temporal_unreachable(error):
        raise error
    if never_connected(error):
        return True
    assert isinstance(error, RPCError)
    confirmed = absent or (lambda: _absent(client, workflow_id))
    if error.status in _NOTHING_DONE and await confirmed():
        return True
    log.warning(
        "workflow start failed but may have gone through; the row stays",
        workflow_id=workflow_id,
        status=error.status.name if error.status is not None else None,
        error=str(error),
    )
    if retry is not None:
        with contextlib.suppress(RPCError, RuntimeError, WorkflowAlreadyStartedError):
            await retry()
    return False
