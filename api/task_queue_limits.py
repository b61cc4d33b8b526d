"""Server-side task-queue rate limits (``UpdateTaskQueueConfig``): pause, emergency stop, reset.

A limit of 0 requests per second holds every activity task in the queue's backlog; nothing is
lost, and every worker obeys it because the server, not the worker, dispatches. Lifting it lets
the backlog drain. Several things may hold one queue at once (a paused kind, an emergency stop of
its provider); who holds it is kept in the limit's ``reason`` on the server, so every API replica
sees the same state, and the queue returns to its configured default only when the last holder
lets go. Same as ``temporal task-queue config set --task-queue-type activity --queue-rps-limit 0``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC

from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import RateLimit, TaskQueue, TaskQueueConfig
from temporalio.api.workflowservice.v1 import (
    DescribeTaskQueueRequest,
    UpdateTaskQueueConfigRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.jobs_lookup import raise_if_unreachable
from api.timestamps import UtcDateTime
from domain.errors import ServiceUnavailable
from domain.queues import RATE_LIMITED_QUEUES, ActivityQueue
from runtime.logging import get_logger
from runtime.settings import Settings

log = get_logger("api.task_queue_limits")

#: the start of every reason Settle writes; a limit whose reason lacks it was set by someone else
REASON_PREFIX = "settle "
#: the holder name of an emergency stop
EMERGENCY_STOP = "emergency-stop"
IDENTITY = "settle-api"


@dataclass
class QueueLimit:
    """One activity task queue's server-side state."""

    task_queue: str
    #: requests per second; None when no limit is set on the server
    rate_per_second: float | None
    #: who holds it at 0 (paused kinds, ``emergency-stop``)
    holders: list[str] = field(default_factory=list)
    reason: str | None = None
    updated_at: UtcDateTime | None = None
    updated_by: str | None = None
    backlog: int | None = None
    backlog_age_seconds: float | None = None

    @property
    def stopped(self) -> bool:
        return self.rate_per_second == 0


def _raise_unsupported(exc: BaseException) -> None:
    """Unreachable, or a server without task-queue configuration: 503 either way."""
    raise_if_unreachable(exc)
    if isinstance(exc, RPCError) and exc.status == RPCStatusCode.UNIMPLEMENTED:
        raise ServiceUnavailable(
            "this Temporal server does not support task-queue rate-limit configuration"
        ) from exc


def _holders(reason: str) -> list[str]:
    if not reason.startswith(REASON_PREFIX):
        return []
    try:
        body = json.loads(reason.removeprefix(REASON_PREFIX))
    except ValueError:
        return []
    held = body.get("held_by") if isinstance(body, dict) else None
    return [h for h in held if isinstance(h, str)] if isinstance(held, list) else []


def _limit(task_queue: str, config: TaskQueueConfig | None) -> QueueLimit:
    limit = QueueLimit(task_queue=task_queue, rate_per_second=None)
    if config is None or not config.HasField("queue_rate_limit"):
        return limit
    queue_limit = config.queue_rate_limit
    if queue_limit.HasField("rate_limit"):
        limit.rate_per_second = queue_limit.rate_limit.requests_per_second
    if queue_limit.HasField("metadata"):
        limit.reason = queue_limit.metadata.reason or None
        limit.holders = _holders(queue_limit.metadata.reason)
        limit.updated_by = queue_limit.metadata.update_identity or None
        if queue_limit.metadata.HasField("update_time"):
            limit.updated_at = queue_limit.metadata.update_time.ToDatetime(tzinfo=UTC)
    return limit


async def describe(client: Client, task_queue: str) -> QueueLimit:
    """The queue's configured limit, who holds it and (where the server reports it) its backlog."""
    try:
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=task_queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
                report_config=True,
                report_stats=True,
            )
        )
    except (RPCError, RuntimeError) as exc:
        _raise_unsupported(exc)
        raise
    limit = _limit(task_queue, response.config if response.HasField("config") else None)
    if response.HasField("stats"):
        limit.backlog = response.stats.approximate_backlog_count
        limit.backlog_age_seconds = (
            response.stats.approximate_backlog_age.ToTimedelta().total_seconds()
        )
    return limit


UPDATE_ATTEMPTS = 4
TRANSIENT = frozenset(
    {RPCStatusCode.CANCELLED, RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED}
)


async def set_limit(
    client: Client, task_queue: str, rate_per_second: float | None, reason: str
) -> QueueLimit:
    """Set the queue's server-side limit; None removes it (the server's default applies).
    Returns the configuration the server answered with (a describe right after an update has
    been seen to answer with the previous one)."""
    update = UpdateTaskQueueConfigRequest.RateLimitUpdate(
        rate_limit=None
        if rate_per_second is None
        else RateLimit(requests_per_second=rate_per_second),
        reason=reason,
    )
    request = UpdateTaskQueueConfigRequest(
        namespace=client.namespace,
        identity=IDENTITY,
        task_queue=task_queue,
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
        update_queue_rate_limit=update,
    )
    for attempt in range(UPDATE_ATTEMPTS):
        try:
            response = await client.workflow_service.update_task_queue_config(request)
            break
        except (RPCError, RuntimeError) as exc:
            # setting a limit is idempotent: a call the server cancelled (seen under load on the
            # dev server) or could not take right now is simply made again
            transient = isinstance(exc, RPCError) and exc.status in TRANSIENT
            if transient and attempt + 1 < UPDATE_ATTEMPTS:
                await asyncio.sleep(0.2 * 2**attempt)
                continue
            _raise_unsupported(exc)
            raise
    log.info("task-queue rate limit set", task_queue=task_queue, rps=rate_per_second, reason=reason)
    return _limit(task_queue, response.config if response.HasField("config") else None)


def _reason(holders: list[str], note: str) -> str:
    return REASON_PREFIX + json.dumps({"held_by": sorted(set(holders)), "note": note})


async def hold(client: Client, task_queue: str, holder: str, note: str) -> QueueLimit:
    """Stop dispatch from the queue (limit 0), adding ``holder`` to those holding it."""
    current = await describe(client, task_queue)
    holders = sorted({*current.holders, holder})
    return _with_backlog(await set_limit(client, task_queue, 0.0, _reason(holders, note)), current)


async def release(
    client: Client, task_queue: str, holder: str | None, default: float | None, note: str
) -> QueueLimit:
    """Let go of the queue for ``holder`` (every holder when None). When nobody holds it any more,
    it returns to ``default``; a queue someone else still holds stays at 0."""
    current = await describe(client, task_queue)
    # a queue stopped at 0 from outside Settle (the CLI, say) has no holders to wait for
    stopped_outside = current.stopped and not current.holders
    if holder is not None and holder not in current.holders and not stopped_outside:
        return current  # not held by this holder: leave it as it is
    holders = [] if holder is None else [h for h in current.holders if h != holder]
    rate = 0.0 if holders else default
    return _with_backlog(await set_limit(client, task_queue, rate, _reason(holders, note)), current)


def _with_backlog(limit: QueueLimit, before: QueueLimit) -> QueueLimit:
    limit.backlog, limit.backlog_age_seconds = before.backlog, before.backlog_age_seconds
    return limit


def default_rate(settings: Settings, queue: ActivityQueue) -> float | None:
    """The configured limit of an activity queue: its provider's setting, else none."""
    for key, governed in RATE_LIMITED_QUEUES.items():
        if governed == queue:
            value: float | None = getattr(
                settings, f"rate_limit_{key.value.replace('-', '_')}_per_second"
            )
            return value
    return None
