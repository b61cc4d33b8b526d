"""Bookkeeping steps (a row in Settle's own database) run as local activities first.

Why: a regular activity costs the Temporal server a schedule, a dispatch, a start and a
completion, and the workflow a task of its own; a ticket purchase's, a deposit's and a
verification's status rows were half their activities, and the server's work per operation set
their rate (issue 16 §1, ``bench/README.md``). A local activity runs in the worker that runs the
workflow, inside its workflow task, and leaves one marker in the history.

What is kept: a local activity is invisible to ``describe`` (no pending activity) and to the
step-visibility reports, so a bookkeeping step that keeps failing would retry in silence. It is
therefore tried locally a few times only (:data:`LOCAL_RETRY`, :data:`LOCAL_ATTEMPT_TIMEOUT`:
about half a minute in all); when those attempts fail the same step runs as the regular activity
it always was, on the ``db`` queue with its own unbounded policy, where the jobs API, the Monitor
and ``SettleStatus=retrying`` see it (issue 14 §3). A refusal that no retry changes (a constraint
the database enforces, a non-retryable error) is not retried locally; it too goes to the regular
activity, which meets it once more and raises it as the ``ActivityError`` the callers handle
(a local failure reaches the workflow as the bare error) and leaves it in the history.

Bookkeeping is written to be done twice safely (an activity's completion can always be lost), so
a local attempt that committed before its worker died, then ran again, is harmless.

Workflows that started before this change replay their recorded regular activities: the choice is
behind :data:`LOCAL_FIRST_PATCH`, decided once per workflow run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import FailureError, is_cancelled_exception

from domain.errors import NON_RETRYABLE
from domain.retries import DB_REFUSALS
from workflows import policies

T = TypeVar("T")

LOCAL_FIRST_PATCH = "bookkeeping-local-first"
#: one local attempt; the database answers in milliseconds when it is there
LOCAL_ATTEMPT_TIMEOUT = timedelta(seconds=10)
#: a few quick local attempts (a dropped connection, a failover), then the visible regular activity
LOCAL_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=2),
    maximum_attempts=3,
    non_retryable_error_types=sorted({*NON_RETRYABLE, *DB_REFUSALS}),
)


async def db_step(
    method: Callable[..., Awaitable[T]],
    arg: Any,
    *,
    queue: str,
    start_to_close_timeout: timedelta = policies.DB_TIMEOUT,
    retry_policy: RetryPolicy = policies.DB_BOOKKEEPING,
) -> T:
    """Run the bookkeeping activity ``method(arg)``: locally first, then (if those attempts
    failed) as a regular activity on ``queue`` with ``retry_policy``. Raises what the regular
    activity would raise: an ``ActivityError`` whose cause is the refusal or the last failure."""
    if workflow.patched(LOCAL_FIRST_PATCH):
        try:
            local: T = await workflow.execute_local_activity_method(
                method,
                arg,
                start_to_close_timeout=LOCAL_ATTEMPT_TIMEOUT,
                retry_policy=LOCAL_RETRY,
            )
            return local
        except FailureError as err:
            # a local failure reaches the workflow as the bare error (an ApplicationError, a
            # TimeoutError), not as the ActivityError callers handle: the regular activity below
            # raises that, and records the failure in the history where an operator sees it
            if is_cancelled_exception(err):
                raise asyncio.CancelledError() from err
            workflow.logger.warning(
                "bookkeeping step %s failed locally, running it as a regular activity: %s",
                getattr(method, "__name__", "db step"),
                err,
            )
    result: T = await workflow.execute_activity_method(
        method,
        arg,
        task_queue=queue,
        start_to_close_timeout=start_to_close_timeout,
        retry_policy=retry_policy,
    )
    return result
