"""Worker interceptor: an activity's error leaves the worker without credentials.

The message of an activity failure goes into Temporal's history, the Web UI, the jobs API and
alerts; a provider error often quotes the URL it called (an RPC URL with its key, Daraja's).
Redacting here, once, covers every activity.
"""

from __future__ import annotations

from typing import Any

from temporalio import worker
from temporalio.exceptions import FailureError

from runtime.redact import redact


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
