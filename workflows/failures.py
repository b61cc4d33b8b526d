"""Reading activity failures in workflow code: the innermost message, its type, cancellation.

A module of its own, small on purpose: every workflow that reports failures imports it, and the
sandbox executes a workflow's imports again for each new workflow instance (importing these from
``workflows.mpesa_deposit`` cost each credential anchor the whole M-Pesa workflow module).
"""

from __future__ import annotations

import asyncio

from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception


def cause_message(error: BaseException) -> str:
    """The innermost message of an activity failure, for status and logs."""
    while isinstance(error, ActivityError) and error.cause is not None:
        error = error.cause
    if isinstance(error, ApplicationError) and error.type:
        return f"{error.type}: {error.message}"
    return str(error)


def root_error_type(error: BaseException) -> str | None:
    """The type name of the innermost application error (e.g. ``EvmReverted``)."""
    while isinstance(error, ActivityError) and error.cause is not None:
        error = error.cause
    return error.type if isinstance(error, ApplicationError) else None


def root_message(error: BaseException) -> str:
    """The innermost message alone (``treasury holds 0.000000 USDC, needs 1.162790``)."""
    while isinstance(error, ActivityError) and error.cause is not None:
        error = error.cause
    return error.message if isinstance(error, ApplicationError) else str(error)


def reraise_if_cancelled(error: ActivityError) -> None:
    """A workflow cancellation reaches an awaited activity as an ActivityError: make it one."""
    if is_cancelled_exception(error):
        raise asyncio.CancelledError() from error
