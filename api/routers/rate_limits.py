"""Rate limits per provider: the server-side rate limit of the provider's activity task queue.

Keys: ``stripe``, ``mpesa``, ``solana``, ``evm-write`` and ``smtp`` (the notify queue). The limits
live on the Temporal server (``UpdateTaskQueueConfig``), so every worker obeys them and they apply
to every tenant: status and changes are for ``platform_admin`` (a tenant's admin cannot stop a
provider for everyone).

A provider's circuit breaker (``runtime.breakers``) holds its task queue like a stop does
(holder ``breaker:<provider>``); the status shows the breaker's state beside the limit.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict

from api.deps import PlatformAdmin, ReadSessionsDep, SettingsDep, TemporalDep
from api.errors import error_responses
from api.task_queue_limits import (
    EMERGENCY_STOP,
    QueueLimit,
    default_rate,
    describe,
    hold,
    release,
    set_limit,
)
from api.timestamps import UtcDateTime
from domain.breakers import PROVIDER_KEYS, BreakerState
from domain.errors import Conflict, InvalidInput, NotFound
from domain.queues import RATE_LIMITED_QUEUES, RateLimitKey, activity_queue_for_prefix
from runtime.logging import get_logger
from runtime.settings import Settings
from store import breakers

log = get_logger("api.rate_limits")
router = APIRouter(prefix="/api/v1/rate-limits", tags=["rate-limits"])

KeyPath = Annotated[
    str,
    Path(pattern=r"^[a-z-]{1,40}$", description="stripe, mpesa, solana, evm-write or smtp"),
]


class BreakerStatus(BaseModel):
    provider: str
    #: closed | open (its queue held: ``breaker:<provider>`` in held_by) | half_open (the probe
    #: answered, the queue is let go, the next call closes or reopens it)
    state: BreakerState
    consecutive_failures: int
    #: the provider's unavailable errors and all its calls in the current error-rate window
    window_failures: int
    window_calls: int
    last_error: str | None
    opened_at: UtcDateTime | None
    #: while open: when a worker asks the provider again
    next_probe_at: UtcDateTime | None
    changed_at: UtcDateTime | None


class RateLimitStatus(BaseModel):
    key: str
    task_queue: str
    #: the server-side limit now (requests per second); None: none set (the server's default)
    rate_per_second: float | None
    #: the configured default (RATE_LIMIT_<KEY>_PER_SECOND) that reset and resume return to
    default_rate_per_second: float | None
    #: dispatch stopped (limit 0)
    stopped: bool
    #: ``emergency-stop``, ``queue:<kind>`` for paused queues using this task queue,
    #: ``breaker:<provider>`` while its circuit breaker is open
    held_by: list[str]
    reason: str | None
    updated_at: UtcDateTime | None
    backlog: int | None
    #: the provider's circuit breaker (counted by the workers in the database)
    breaker: BreakerStatus | None = None


class RateLimitList(BaseModel):
    items: list[RateLimitStatus]


class StopRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str | None = None
    all: bool = False


def key_of(value: str, field: str = "key") -> RateLimitKey:
    try:
        return RateLimitKey(value)
    except ValueError:
        known = ", ".join(k.value for k in RateLimitKey)
        raise NotFound(f"no rate limit named {value!r}; keys: {known}", field=field) from None


def _task_queue(settings: Settings, key: RateLimitKey) -> str:
    return activity_queue_for_prefix(settings.task_queue_prefix, RATE_LIMITED_QUEUES[key])


def _status(settings: Settings, key: RateLimitKey, limit: QueueLimit) -> RateLimitStatus:
    return RateLimitStatus(
        key=key.value,
        task_queue=limit.task_queue,
        rate_per_second=limit.rate_per_second,
        default_rate_per_second=default_rate(settings, RATE_LIMITED_QUEUES[key]),
        stopped=limit.stopped,
        held_by=limit.holders,
        reason=limit.reason,
        updated_at=limit.updated_at,
        backlog=limit.backlog,
    )


def _keys(body: StopRequest) -> list[RateLimitKey]:
    if body.all == (body.key is not None):
        raise InvalidInput('give either {"key": "..."} or {"all": true}', field="key")
    if body.all:
        return list(RateLimitKey)
    assert body.key is not None
    try:
        return [RateLimitKey(body.key)]
    except ValueError:
        known = ", ".join(k.value for k in RateLimitKey)
        raise InvalidInput(f"unknown key {body.key!r}; keys: {known}", field="key") from None


@router.get(
    "/status/{key}", response_model=RateLimitStatus, responses=error_responses(401, 403, 404, 503)
)
async def rate_limit_status(
    key: KeyPath,
    _principal: PlatformAdmin,
    settings: SettingsDep,
    temporal: TemporalDep,
    reads: ReadSessionsDep,
) -> RateLimitStatus:
    """The provider's current server-side limit, whether it is stopped and its circuit
    breaker. The limit is what ``temporal task-queue config get --task-queue settle-stripe
    --task-queue-type activity`` shows."""
    k = key_of(key)
    status = _status(settings, k, await describe(temporal, _task_queue(settings, k)))
    status.breaker = await _breaker(reads, settings, k)
    return status


async def _breaker(reads: ReadSessionsDep, settings: Settings, key: RateLimitKey) -> BreakerStatus:
    provider = next(p for p, k in PROVIDER_KEYS.items() if k == key)
    row = (await breakers.states(reads, settings.task_queue_prefix)).get(provider)
    if row is None:
        return BreakerStatus(
            provider=provider.value,
            state=BreakerState.CLOSED,
            consecutive_failures=0,
            window_failures=0,
            window_calls=0,
            last_error=None,
            opened_at=None,
            next_probe_at=None,
            changed_at=None,
        )
    return BreakerStatus(
        provider=provider.value,
        state=BreakerState(row.state),
        consecutive_failures=row.consecutive_failures,
        window_failures=row.window_failures,
        window_calls=row.window_calls,
        last_error=row.last_error,
        opened_at=row.opened_at,
        next_probe_at=row.next_probe_at if row.state == BreakerState.OPEN.value else None,
        changed_at=row.changed_at,
    )


@router.post(
    "/reset/{key}",
    response_model=RateLimitStatus,
    responses=error_responses(401, 403, 404, 409, 503),
)
async def reset_rate_limit(
    key: KeyPath, principal: PlatformAdmin, settings: SettingsDep, temporal: TemporalDep
) -> RateLimitStatus:
    """Back to the configured default. 409 while stopped or held by a paused queue: resume
    first, so a reset never restarts what someone stopped."""
    k = key_of(key)
    task_queue = _task_queue(settings, k)
    current = await describe(temporal, task_queue)
    if current.holders:
        raise Conflict(
            f"{k.value} is held by {', '.join(current.holders)}; resume it first", field="key"
        )
    default = default_rate(settings, RATE_LIMITED_QUEUES[k])
    limit = await set_limit(temporal, task_queue, default, f"settle reset by {principal.subject}")
    log.info("rate limit reset", key=k.value, rps=default, by=principal.subject)
    return _status(settings, k, limit)


@router.post(
    "/emergency-stop", response_model=RateLimitList, responses=error_responses(401, 403, 422, 503)
)
async def emergency_stop(
    body: StopRequest, principal: PlatformAdmin, settings: SettingsDep, temporal: TemporalDep
) -> RateLimitList:
    """Stop calling a provider (``{"key": "stripe"}``) or every provider (``{"all": true}``):
    the limit goes to 0, running activities finish, scheduled ones wait. Same as
    ``temporal task-queue config set --task-queue settle-stripe --task-queue-type activity
    --queue-rps-limit 0``."""
    items = []
    for k in _keys(body):
        note = f"emergency stop by {principal.subject}"
        limit = await hold(temporal, _task_queue(settings, k), EMERGENCY_STOP, note)
        items.append(_status(settings, k, limit))
        log.warning("provider stopped", key=k.value, by=principal.subject)
    return RateLimitList(items=items)


@router.post("/resume", response_model=RateLimitList, responses=error_responses(401, 403, 422, 503))
async def resume(
    body: StopRequest, principal: PlatformAdmin, settings: SettingsDep, temporal: TemporalDep
) -> RateLimitList:
    """Lift an emergency stop: the limit returns to its configured default, unless a paused
    queue still holds the task queue."""
    items = []
    for k in _keys(body):
        note = f"resumed by {principal.subject}"
        default = default_rate(settings, RATE_LIMITED_QUEUES[k])
        limit = await release(temporal, _task_queue(settings, k), EMERGENCY_STOP, default, note)
        items.append(_status(settings, k, limit))
        log.info("provider resumed", key=k.value, by=principal.subject)
    return RateLimitList(items=items)
