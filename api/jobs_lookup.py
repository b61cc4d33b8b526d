"""Jobs (Settle workflow executions) as the operations API sees them: who may see which, safe
visibility queries, and the parked error read from a workflow's ``status`` query.

Visibility is the source of lists (eventually consistent: a job parked a moment ago may take a
moment to show); ``describe`` is the source for one job (it reads the execution's own state, so
its search attributes are current). Every list query carries ``SettleTenant="<caller tenant>"``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any, Literal, TypeVar

from pydantic import BaseModel
from temporalio.api.enums.v1 import EventType
from temporalio.api.failure.v1 import Failure
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHistoryEventFilterType,
    WorkflowQueryFailedError,
)
from temporalio.common import TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from api.auth import Principal, Role
from api.timestamps import UtcDateTime
from domain.errors import Conflict, Forbidden, NotFound, ServiceUnavailable, Unauthorized
from domain.search import (
    SETTLE_KIND,
    SETTLE_STATUS,
    SETTLE_TENANT,
    SETTLE_USER,
    OperationKind,
    OperationStatus,
)
from runtime.logging import get_logger
from runtime.redact import redact
from runtime.temporal import temporal_unreachable

log = get_logger("api.jobs")

T = TypeVar("T")

#: workflow ids Settle makes (``mpesa-deposit-<uuid>``, ``chain-scanner-settle-base`` ...); no
#: quotes, spaces or backslashes, so an id can never change the meaning of a visibility query
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,254}$"
#: what may stand between double quotes in a visibility query: no quote, backslash or control
#: character, so a value cannot end the literal (tenants and subjects come from tokens and may be
#: ``auth0|123`` or ``alice+ops@example.com``)
_SAFE_VALUE = re.compile(r"[^\"'\\\x00-\x1f\x7f]{1,255}")

#: how long one ``status`` query may take before the job's error is reported as unknown
QUERY_TIMEOUT = timedelta(seconds=2)
#: how many workflows are queried or signalled at once (the dev server is one process)
CONCURRENCY = 16

_PARKED = OperationStatus.NEEDS_ATTENTION.value
#: Temporal execution statuses, as the API spells them
_TEMPORAL_STATUS = {
    WorkflowExecutionStatus.RUNNING: "running",
    WorkflowExecutionStatus.COMPLETED: "completed",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.CANCELED: "cancelled",
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.CONTINUED_AS_NEW: "continued_as_new",
    WorkflowExecutionStatus.TIMED_OUT: "timed_out",
}


def quote(value: str) -> str:
    """A visibility-query string literal. Values that could break out of the quotes are refused
    (callers validate input first; reaching this with such a value is a bug)."""
    if not _SAFE_VALUE.fullmatch(value):
        raise ValueError(f"refusing to put {value!r} in a visibility query")
    return f'"{value}"'


def tenant_query(principal: Principal, *clauses: str) -> str:
    """A visibility query limited to the caller's tenant (and to their own jobs for a user); a
    ``platform_admin`` reads every tenant's jobs (Settle's kinds only)."""
    if principal.sees_every_tenant:
        return " AND ".join(["SettleKind IS NOT NULL", *clauses])
    try:
        parts = [f"SettleTenant = {quote(principal.tenant)}"]
        if not is_staff(principal):
            parts.append(f"SettleUser = {quote(principal.subject)}")
    except ValueError as exc:
        raise Unauthorized("the token's tenant or subject contains a quote or backslash") from exc
    return " AND ".join([*parts, *clauses])


def parked_query(principal: Principal, kind: OperationKind | None = None) -> str:
    clauses = [f"SettleStatus = {quote(_PARKED)}", 'ExecutionStatus = "Running"']
    if kind is not None:
        clauses.append(f"SettleKind = {quote(kind.value)}")
    return tenant_query(principal, *clauses)


def dead_letter_query(principal: Principal, kind: OperationKind | None = None) -> str:
    """Parked jobs and jobs with a step still failing (``retrying``): what an operator should
    look at. Only parked ones take ``retry`` (see :func:`parked_query`)."""
    statuses = (_PARKED, OperationStatus.RETRYING.value)
    clauses = [
        "(" + " OR ".join(f"SettleStatus = {quote(s)}" for s in statuses) + ")",
        'ExecutionStatus = "Running"',
    ]
    if kind is not None:
        clauses.append(f"SettleKind = {quote(kind.value)}")
    return tenant_query(principal, *clauses)


def is_staff(principal: Principal) -> bool:
    """``admin`` and ``venue_admin`` see every job of their tenant (``platform_admin`` of every
    tenant); a ``user`` only their own."""
    return bool({Role.ADMIN, Role.VENUE_ADMIN, Role.PLATFORM_ADMIN} & principal.roles)


@dataclass(frozen=True)
class JobRef:
    """What the search attributes say about one execution."""

    id: str
    run_id: str | None
    workflow_type: str
    kind: str | None
    tenant: str | None
    user: str | None
    settle_status: str | None
    execution_status: WorkflowExecutionStatus | None
    started_at: UtcDateTime | None
    closed_at: UtcDateTime | None

    @classmethod
    def of(cls, execution: WorkflowExecution) -> JobRef:
        attrs: TypedSearchAttributes = execution.typed_search_attributes
        return cls(
            id=execution.id,
            run_id=execution.run_id,
            workflow_type=execution.workflow_type,
            kind=attrs.get(SETTLE_KIND),
            tenant=attrs.get(SETTLE_TENANT),
            user=attrs.get(SETTLE_USER),
            settle_status=attrs.get(SETTLE_STATUS),
            execution_status=execution.status,
            started_at=execution.start_time,
            closed_at=execution.close_time,
        )

    @property
    def running(self) -> bool:
        return self.execution_status == WorkflowExecutionStatus.RUNNING

    @property
    def parked(self) -> bool:
        return self.running and self.settle_status == _PARKED

    @property
    def temporal_status(self) -> str | None:
        return _TEMPORAL_STATUS.get(self.execution_status) if self.execution_status else None

    @property
    def status(self) -> str | None:
        """The business status; for a closed run that never said how it ended (terminated, timed
        out, or failed while still ``running``/``needs_attention``), Temporal's status."""
        if self.running or self.settle_status not in (
            None,
            OperationStatus.RUNNING,
            OperationStatus.RETRYING,
            _PARKED,
        ):
            return self.settle_status
        return self.temporal_status

    def visible_to(self, principal: Principal) -> bool:
        if principal.sees_every_tenant:
            return self.kind is not None  # Settle's operations, not foreign workflows
        if self.tenant != principal.tenant:
            return False
        return is_staff(principal) or self.user == principal.subject

    def owned_by(self, principal: Principal) -> bool:
        return self.tenant == principal.tenant and self.user == principal.subject

    def administered_by(self, principal: Principal) -> bool:
        """An admin of the job's own tenant (a platform_admin reads every tenant, acts on none)."""
        return principal.is_admin and self.tenant == principal.tenant


async def describe_job(
    client: Client, job_id: str, principal: Principal
) -> tuple[JobRef, WorkflowExecutionDescription]:
    """The job if the caller may see it; 404 for a missing job and for anyone else's."""
    try:
        description = await client.get_workflow_handle(job_id).describe()
    except (RPCError, RuntimeError) as exc:
        if isinstance(exc, RPCError) and exc.status == RPCStatusCode.NOT_FOUND:
            raise NotFound("job not found", field="job_id") from exc
        raise_if_unreachable(exc)
        raise
    job = JobRef.of(description)
    if not job.visible_to(principal):
        raise NotFound("job not found", field="job_id")
    return job, description


def raise_if_unreachable(exc: BaseException) -> None:
    """Temporal not answering is a 503; anything else is not ours to translate."""
    if temporal_unreachable(exc):
        raise ServiceUnavailable("the workflow service is unavailable") from exc


async def list_jobs(client: Client, query: str, limit: int) -> list[JobRef]:
    try:
        return [JobRef.of(w) async for w in client.list_workflows(query, limit=limit)]
    except (RPCError, RuntimeError) as exc:
        raise_if_unreachable(exc)
        raise


async def status_error(client: Client, job_id: str) -> str | None:
    """The ``error`` field of the workflow's ``status`` query; None when it has none, or when the
    workflow does not answer within :data:`QUERY_TIMEOUT` (no worker polling, for instance)."""
    try:
        state: Any = await client.get_workflow_handle(job_id).query(
            "status", rpc_timeout=QUERY_TIMEOUT
        )
    except (RPCError, RuntimeError, WorkflowQueryFailedError) as exc:
        log.info("status query unanswered", job_id=job_id, error=str(exc))
        return None
    error = state.get("error") if isinstance(state, dict) else getattr(state, "error", None)
    return redact(error) if isinstance(error, str) and error else None


async def failure_message(client: Client, job_id: str, run_id: str | None) -> str | None:
    """The failure of a failed run, from its close event: message, then its causes' messages."""
    handle = client.get_workflow_handle(job_id, run_id=run_id)
    try:
        async for event in handle.fetch_history_events(
            event_filter_type=WorkflowHistoryEventFilterType.CLOSE_EVENT
        ):
            if event.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
                return None
            failure = event.workflow_execution_failed_event_attributes.failure
            return redact(": ".join(await failure_messages(client, failure)))
    except (RPCError, RuntimeError) as exc:
        log.info("close event unreadable", job_id=job_id, error=str(exc))
    return None


async def failure_messages(client: Client, failure: Failure, limit: int = 4) -> list[str]:
    """A failure's message and its causes' messages, decrypted: the payload codec keeps messages
    and stack traces in the failure's encoded attributes, so Temporal holds no PII in clear."""
    try:
        error: BaseException | None = await client.data_converter.decode_failure(failure)
    except Exception as exc:  # a key that is gone, a failure of another shape
        log.info("failure not decodable", error=str(exc))
        return [failure.message] if failure.message else []
    messages: list[str] = []
    while error is not None and len(messages) < limit:
        message = getattr(error, "message", None) or str(error)
        if message:
            messages.append(message)
        error = error.__cause__
    return messages


#: ``"<step> failed: <ErrorType>: <message>"``, as the workflows write their parked errors
_ERROR_SHAPE = re.compile(r"^(?P<step>[^:]{1,80}): (?:(?P<type>[A-Z][A-Za-z0-9_]{0,79}): )?")


def error_parts(error: str | None) -> tuple[str | None, str | None]:
    """``(error_type, step)`` of a parked error, e.g. ``("IdempotencyConflict", "credit failed")``;
    ``(None, None)`` for a message of another shape."""
    if not error:
        return None, None
    match = _ERROR_SHAPE.match(error)
    if match is None:
        return None, None
    return match.group("type"), match.group("step")


#: identity the API gives Temporal when an admin terminates or abandons a job through it
API_IDENTITY_PREFIX = "settle-api:"


def api_identity(principal: Principal) -> str:
    return f"{API_IDENTITY_PREFIX}{principal.tenant}/{principal.subject}"


class OperatorDecision(BaseModel):
    """An operator ended this job: it stands against its owner (only an ``admin`` retries it)."""

    action: Literal["terminated", "abandoned"]
    reason: str | None
    #: the admin's token subject when decided through the API; else the identity Temporal
    #: recorded (``temporal --identity``, the Web UI's user)
    by: str | None
    at: UtcDateTime | None


def who(identity: str) -> str | None:
    """The token subject behind an identity the API recorded, else the identity as Temporal has it
    (``temporal --identity``, the Web UI's user)."""
    if identity.startswith(API_IDENTITY_PREFIX):
        return identity.removeprefix(API_IDENTITY_PREFIX).partition("/")[2] or None
    return identity or None


async def operator_decision(client: Client, job: JobRef) -> OperatorDecision | None:
    """Who terminated or abandoned the job, why and when, read from its history (the terminate
    event; the last ``abandon`` signal of an abandoned job). None for any other job."""
    if job.temporal_status != "terminated" and job.settle_status != OperationStatus.ABANDONED:
        return None
    handle = client.get_workflow_handle(job.id, run_id=job.run_id)
    found: OperatorDecision | None = None
    try:
        if job.temporal_status == "terminated":
            async for event in handle.fetch_history_events(
                event_filter_type=WorkflowHistoryEventFilterType.CLOSE_EVENT
            ):
                attrs = event.workflow_execution_terminated_event_attributes
                found = OperatorDecision(
                    action="terminated",
                    reason=attrs.reason or None,
                    by=who(attrs.identity),
                    at=event.event_time.ToDatetime(tzinfo=UTC),
                )
            return found
        async for event in handle.fetch_history_events():
            if event.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                continue
            signal = event.workflow_execution_signaled_event_attributes
            if signal.signal_name != "abandon":
                continue
            reason = None
            if signal.input.payloads:
                (value,) = await client.data_converter.decode(list(signal.input.payloads)[:1])
                reason = value if isinstance(value, str) else None
            found = OperatorDecision(
                action="abandoned",
                reason=reason or "abandoned by an operator",
                by=who(signal.identity),
                at=event.event_time.ToDatetime(tzinfo=UTC),
            )
    except (RPCError, RuntimeError) as exc:
        raise_if_unreachable(exc)
        raise
    return found


def refuse_overriding(decision: OperatorDecision | None, principal: Principal) -> None:
    """An operator's terminate or abandon stands against the job's owner: only an admin may
    retry or reset such a job."""
    if decision is not None and not principal.is_admin:
        why = f": {decision.reason}" if decision.reason else ""
        by = f" by {decision.by}" if decision.by else ""
        raise Forbidden(
            f"the job was {decision.action}{by}{why}; only an admin can retry it", field="job_id"
        )


async def bounded(items: Iterable[T], call: Callable[[T], Awaitable[Any]]) -> list[Any]:
    """``call`` for every item, at most :data:`CONCURRENCY` at a time, results in order."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(item: T) -> Any:
        async with gate:
            return await call(item)

    return list(await asyncio.gather(*(one(item) for item in items)))


async def signal_retry(client: Client, job_id: str) -> None:
    """The ``retry`` signal every parkable workflow has (``workflows/dead_letter.py``); the job
    was just described as parked, so NOT_FOUND here means it closed meanwhile."""
    try:
        await client.get_workflow_handle(job_id).signal("retry")
    except (RPCError, RuntimeError) as exc:
        if isinstance(exc, RPCError) and exc.status == RPCStatusCode.NOT_FOUND:
            raise Conflict("the job closed before it could be retried", field="job_id") from exc
        raise_if_unreachable(exc)
        raise
