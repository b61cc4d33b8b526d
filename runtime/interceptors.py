"""Worker interceptors around every activity, so no activity has to remember them:

- :class:`RedactingInterceptor`: an activity's error leaves the worker without credentials. The
  message of an activity failure goes into Temporal's history, the Web UI, the jobs API and
  alerts; a provider error often quotes the URL it called (an RPC URL with its key, Daraja's).
- :class:`DatabaseErrorInterceptor`: a constraint violation nobody caught is raised as a readable,
  non-retryable error (:mod:`runtime.db_errors`), so the step parks or fails at once.
- :class:`StepVisibilityInterceptor`: a step failing from attempt ``STEP_ALERT_AFTER_ATTEMPTS``
  on is reported to its workflow (:mod:`domain.retries`).

Order in the worker: visibility outermost (it reports the error as it finally leaves), then
redaction, then the database errors (the readable error is redacted too).
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import activity, worker
from temporalio.exceptions import ApplicationError, FailureError

from domain.retries import REPORT_ERROR_MAX, STEP_RETRYING_SIGNAL, StepReport
from runtime.db_errors import non_retryable_integrity_error
from runtime.failures import trim_middle
from runtime.logging import get_logger
from runtime.redact import redact

log = get_logger("runtime.interceptors")

#: how long reporting a step may hold up the attempt's result
REPORT_TIMEOUT_SECONDS = 5.0


def _redact_exception(exc: BaseException) -> None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, FailureError):
            current._message = redact(current._message)
        current.args = tuple(redact(a) if isinstance(a, str) else a for a in current.args)
        current = current.__cause__ or current.__context__


class _RedactingActivityInbound(worker.ActivityInboundInterceptor):
    async def execute_activity(self, input: worker.ExecuteActivityInput) -> Any:
        try:
            return await super().execute_activity(input)
        except Exception as exc:
            _redact_exception(exc)
            raise


class RedactingInterceptor(worker.Interceptor):
    def intercept_activity(
        self, next: worker.ActivityInboundInterceptor
    ) -> worker.ActivityInboundInterceptor:
        return _RedactingActivityInbound(next)


class _DatabaseErrorActivityInbound(worker.ActivityInboundInterceptor):
    async def execute_activity(self, input: worker.ExecuteActivityInput) -> Any:
        try:
            return await super().execute_activity(input)
        except Exception as exc:
            refused = non_retryable_integrity_error(exc)
            if refused is None:
                raise
            info = activity.info()
            log.warning(
                "database refused a write",
                activity=info.activity_type,
                workflow_id=info.workflow_id,
                error=refused.message,
            )
            # the original's frames, not its message: that quotes the SQL and its parameters
            raise refused.with_traceback(exc.__traceback__) from None


class DatabaseErrorInterceptor(worker.Interceptor):
    def intercept_activity(
        self, next: worker.ActivityInboundInterceptor
    ) -> worker.ActivityInboundInterceptor:
        return _DatabaseErrorActivityInbound(next)


def will_retry(exc: BaseException, info: activity.Info) -> bool:
    """Whether Temporal will run this activity again after ``exc``."""
    if isinstance(exc, ApplicationError) and exc.non_retryable:
        return False
    policy = info.retry_policy
    if policy is None:
        return True
    if policy.maximum_attempts and info.attempt >= policy.maximum_attempts:
        return False
    kind = exc.type if isinstance(exc, ApplicationError) and exc.type else type(exc).__name__
    return kind not in (policy.non_retryable_error_types or ())


def describe_error(exc: BaseException) -> str:
    kind = exc.type if isinstance(exc, ApplicationError) and exc.type else type(exc).__name__
    message = exc.message if isinstance(exc, FailureError) else str(exc)
    return trim_middle(redact(f"{kind}: {message}"), REPORT_ERROR_MAX)


class _StepVisibilityActivityInbound(worker.ActivityInboundInterceptor):
    def __init__(self, next: worker.ActivityInboundInterceptor, alert_after: int) -> None:
        super().__init__(next)
        self._alert_after = alert_after

    async def execute_activity(self, input: worker.ExecuteActivityInput) -> Any:
        """Attempt N failing (and retried) is reported with its error; attempt N + 1 is reported
        as it starts, whatever ended attempt N (an error, or a timeout that this worker never
        saw: a hung call, a worker that died); a later attempt clears the report as it succeeds
        or gives up. The workflow takes repeated reports as one. Later attempts that fail again
        send nothing: a step retried for hours (a node outage) costs its workflow two or three
        signals, not one per attempt."""
        info = activity.info()
        after = self._alert_after
        if info.attempt == after + 1:
            await self._report(info, True, None)
        try:
            result = await super().execute_activity(input)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            retrying = will_retry(exc, info)
            if retrying and info.attempt == after:
                await self._report(info, True, describe_error(exc))
            elif not retrying and info.attempt > after:
                await self._report(info, False, describe_error(exc))
            raise
        if info.attempt > after:
            await self._report(info, False, None)
        return result

    async def _report(self, info: activity.Info, retrying: bool, error: str | None) -> None:
        """Tell the workflow; never fail the attempt for it (the Monitor also looks)."""
        if info.is_local or not info.workflow_id:
            return
        report = StepReport(
            activity_type=info.activity_type,
            activity_id=info.activity_id,
            attempt=info.attempt,
            retrying=retrying,
            error=error,
        )
        try:
            handle = activity.client().get_workflow_handle(
                info.workflow_id, run_id=info.workflow_run_id
            )
            await asyncio.wait_for(
                handle.signal(STEP_RETRYING_SIGNAL, report), REPORT_TIMEOUT_SECONDS
            )
        except Exception as exc:  # the workflow closed, Temporal is away: the attempt stands
            log.info("step report not delivered", workflow_id=info.workflow_id, error=str(exc))
        if retrying:
            log.warning(
                "step still failing",
                activity=info.activity_type,
                workflow_id=info.workflow_id,
                attempt=info.attempt,
                error=error,
            )


class StepVisibilityInterceptor(worker.Interceptor):
    """Reports steps failing from attempt ``alert_after`` on (``STEP_ALERT_AFTER_ATTEMPTS``)."""

    def __init__(self, alert_after: int) -> None:
        self._alert_after = max(1, alert_after)

    def intercept_activity(
        self, next: worker.ActivityInboundInterceptor
    ) -> worker.ActivityInboundInterceptor:
        return _StepVisibilityActivityInbound(next, self._alert_after)


def activity_interceptors(alert_after: int) -> list[worker.Interceptor]:
    """The worker's interceptors, outermost first."""
    return [
        StepVisibilityInterceptor(alert_after),
        RedactingInterceptor(),
        DatabaseErrorInterceptor(),
    ]
