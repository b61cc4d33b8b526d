"""Circuit breakers in the worker: count provider-call outcomes, hold a failing provider's queue,
probe it, let it go again.

* **Counting**: an activity interceptor sees every activity's outcome in this worker and counts
  it on the provider's row in PostgreSQL (:mod:`store.breakers`), so several worker processes
  trip one breaker together. Only the provider's *unavailable* errors count as failures
  (:mod:`domain.breakers`).
* **Opening**: the worker whose call trips it holds the provider's activity task queues at 0 with
  the task-queue machinery of the pause API (holder ``breaker:<provider>``) and raises an alert
  (``circuit_breaker_open``). Held activities wait in the server's backlog: nothing is lost and
  no retry attempt is spent while it is open (the workflows set no schedule-to-close timeout on
  these activities, so a wait in the backlog cannot time them out).
* **Probing**: every worker runs a loop that claims due probes in the database (one worker per
  probe interval), asks the provider a harmless question, and when it answers lets the queues go
  (half-open). The first call after that closes the breaker (alert cleared) or opens it again.
  A loop in every worker rather than a breaker workflow: the probe cannot run on the queue it
  holds, the claim in the database already makes it one probe per interval for the fleet, and
  any worker that is up takes the next probe when another dies; a workflow would add a queue of
  its own, a history per outage and patches to keep.
* **Metric**: ``circuit_breaker_state{provider}`` (0 closed, 1 open, 2 half-open) on the
  worker's metrics endpoint, read from the database, so every worker reports the fleet's state.

Counting never fails an activity: if the database cannot be reached the outcome is only logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity, worker
from temporalio.client import Client
from temporalio.common import MetricMeter

from api.task_queue_limits import default_rate, describe, hold, release
from domain.breakers import (
    GAUGE,
    PROVIDER_QUEUES,
    BreakerState,
    Provider,
    holder,
    is_unavailable,
    provider_for,
)
from domain.mpesa import RaiseAlertInput
from domain.queues import ActivityQueue, activity_queue_for_prefix
from runtime.logging import get_logger
from runtime.redact import redact
from runtime.settings import Settings
from store import alerts
from store import breakers as rows
from store.breakers import Thresholds, Transition

log = get_logger("runtime.breakers")

ALERT_CONDITION = "circuit_breaker_open"
#: a probe that does not answer within this long failed
PROBE_TIMEOUT_SECONDS = 10.0
#: counting an outcome may take this long before it is given up (the activity is not held up)
RECORD_TIMEOUT_SECONDS = 5.0
#: successes are counted together, this long after the first of them: a success only adds to
#: the window (or closes a half-open breaker), and one locked write per call on the provider's
#: row held each call's worker slot and queued every worker's calls behind each other
SUCCESS_FLUSH_SECONDS = 0.5

Probe = Callable[[], Awaitable[Any]]


def thresholds(settings: Settings) -> Thresholds:
    return Thresholds(
        consecutive_failures=settings.breaker_consecutive_failures,
        window_seconds=settings.breaker_window_seconds,
        window_min_calls=settings.breaker_window_min_calls,
        error_rate=settings.breaker_error_rate,
        probe_interval_seconds=settings.breaker_probe_interval_seconds,
    )


class Breakers:
    """The fleet's breakers as this worker sees them: counting, transitions, probes."""

    def __init__(
        self,
        client: Client,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        probes: dict[Provider, Probe],
    ) -> None:
        self._client, self._sessions, self._settings = client, sessions, settings
        self._probes = probes
        self._thresholds = thresholds(settings)
        self.scope = settings.task_queue_prefix
        #: successes not counted in the database yet, and the task that will count them
        self._successes: dict[Provider, int] = {}
        self._flushing: dict[Provider, asyncio.Task[None]] = {}

    def provider_of(self, task_queue: str, activity_type: str) -> Provider | None:
        name = task_queue.removeprefix(self.scope)
        try:
            queue = ActivityQueue(name)
        except ValueError:
            return None
        return provider_for(queue, activity_type)

    async def outcome(self, provider: Provider, error: BaseException | None) -> None:
        """Count a call: a failure at once (with the successes before it), a success within
        :data:`SUCCESS_FLUSH_SECONDS` together with the others."""
        failed = error is not None and is_unavailable(provider, error)
        if not failed:
            self._successes[provider] = self._successes.get(provider, 0) + 1
            if provider not in self._flushing:
                self._flushing[provider] = asyncio.create_task(self._count_successes(provider))
            return
        before = self._successes.pop(provider, 0)
        await self._count(provider, redact(str(error)), calls=before + 1)

    async def _count_successes(self, provider: Provider) -> None:
        try:
            await asyncio.sleep(SUCCESS_FLUSH_SECONDS)
        finally:
            self._flushing.pop(provider, None)
        calls = self._successes.pop(provider, 0)
        if calls:
            await self._count(provider, None, calls=calls)

    async def _count(self, provider: Provider, error: str | None, *, calls: int) -> None:
        """``calls`` outcomes on the provider's row: successes, the last one failed if
        ``error``."""
        failed = error is not None
        try:
            transition = await asyncio.wait_for(
                rows.record(
                    self._sessions,
                    self.scope,
                    provider,
                    failed=failed,
                    error=error,
                    thresholds=self._thresholds,
                    calls=calls,
                ),
                RECORD_TIMEOUT_SECONDS,
            )
            if transition is not None:
                await self._apply(provider, transition)
        except Exception as exc:  # counting must never fail the activity
            log.warning("breaker outcome not counted", provider=provider.value, error=str(exc))

    async def _apply(self, provider: Provider, transition: Transition) -> None:
        if transition in (Transition.OPENED, Transition.REOPENED):
            log.warning("circuit breaker opened", provider=provider.value, how=transition.value)
            await self._hold(provider)
            async with self._sessions.begin() as session:
                await alerts.raise_event(
                    session,
                    RaiseAlertInput(
                        condition=ALERT_CONDITION,
                        message=(
                            f"{provider.value} is failing: its calls are held until it answers "
                            f"again (probed every {self._thresholds.probe_interval_seconds:g} s)"
                        ),
                        reference=self._reference(provider),
                        severity="critical",
                    ),
                )
        elif transition == Transition.HALF_OPENED:
            log.info("circuit breaker half-open: queue released", provider=provider.value)
            await self._release(provider)
        elif transition == Transition.CLOSED:
            log.info("circuit breaker closed", provider=provider.value)
            async with self._sessions.begin() as session:
                await alerts.clear_event(session, ALERT_CONDITION, self._reference(provider))

    def _reference(self, provider: Provider) -> str:
        return f"{self.scope}{provider.value}"

    def _queues(self, provider: Provider) -> list[tuple[ActivityQueue, str]]:
        return [(q, activity_queue_for_prefix(self.scope, q)) for q in PROVIDER_QUEUES[provider]]

    async def _hold(self, provider: Provider) -> None:
        note = f"circuit breaker: {provider.value} unavailable"
        for _, task_queue in self._queues(provider):
            await hold(self._client, task_queue, holder(provider), note)

    async def _release(self, provider: Provider) -> None:
        note = f"circuit breaker: {provider.value} answers again"
        for queue, task_queue in self._queues(provider):
            default = default_rate(self._settings, queue)
            await release(self._client, task_queue, holder(provider), default, note)

    async def _release_if_still_held(self, provider: Provider) -> None:
        for queue, task_queue in self._queues(provider):
            if holder(provider) not in (await describe(self._client, task_queue)).holders:
                continue
            log.warning(
                "circuit breaker half-open but its queue still held: released",
                provider=provider.value,
                task_queue=task_queue,
            )
            note = f"circuit breaker: {provider.value} answers again"
            default = default_rate(self._settings, queue)
            await release(self._client, task_queue, holder(provider), default, note)

    async def probe_due(self) -> None:
        """Probe the open breakers whose probe is due (and this worker claimed)."""
        due = await rows.claim_probes(
            self._sessions, self.scope, self._settings.breaker_probe_interval_seconds
        )
        for provider in due:
            probe = self._probes.get(provider)
            if probe is None:
                continue
            try:
                await asyncio.wait_for(probe(), PROBE_TIMEOUT_SECONDS)
            except Exception as exc:
                log.info("breaker probe failed", provider=provider.value, error=redact(str(exc)))
                await rows.probed(
                    self._sessions, self.scope, provider, answered=False, error=redact(str(exc))
                )
                # the hold again: idempotent, and repairs one that failed when it opened
                await self._hold(provider)
                continue
            transition = await rows.probed(
                self._sessions, self.scope, provider, answered=True, error=None
            )
            if transition is not None:
                await self._apply(provider, transition)
        # half-open for a whole interval: its queue should have been let go and its calls have
        # closed or reopened it; let go again (idempotent) in case the worker that recorded
        # half-open was killed before releasing the queue (seen in the chaos run)
        for provider in await rows.claim_half_open(
            self._sessions, self.scope, self._settings.breaker_probe_interval_seconds
        ):
            await self._release_if_still_held(provider)

    async def gauges(self) -> dict[Provider, int]:
        states = await rows.states(self._sessions, self.scope)
        return {
            p: int(GAUGE[BreakerState(states[p].state)]) if p in states else 0 for p in Provider
        }

    async def run(self, meter: MetricMeter | None, tick_seconds: float | None = None) -> None:
        """Probe what is due and publish ``circuit_breaker_state``, every tick, until cancelled."""
        gauge = (
            meter.create_gauge(
                "circuit_breaker_state",
                "Circuit breaker per provider: 0 closed, 1 open (queue held), 2 half-open",
            )
            if meter is not None
            else None
        )
        tick = tick_seconds or min(1.0, self._settings.breaker_probe_interval_seconds / 2)
        while True:
            try:
                await self.probe_due()
                if gauge is not None:
                    for provider, value in (await self.gauges()).items():
                        gauge.set(value, {"provider": provider.value})
            except Exception as exc:
                log.warning("breaker loop", error=str(exc))
            await asyncio.sleep(tick)


class _BreakerActivityInbound(worker.ActivityInboundInterceptor):
    def __init__(self, next: worker.ActivityInboundInterceptor, breakers: Breakers) -> None:
        super().__init__(next)
        self._breakers = breakers

    async def execute_activity(self, input: worker.ExecuteActivityInput) -> Any:
        info = activity.info()
        provider = self._breakers.provider_of(info.task_queue, info.activity_type)
        if provider is None:
            return await super().execute_activity(input)
        try:
            result = await super().execute_activity(input)
        except Exception as exc:
            await self._breakers.outcome(provider, exc)
            raise
        await self._breakers.outcome(provider, None)
        return result


class BreakerInterceptor(worker.Interceptor):
    """Counts each provider activity's outcome on its breaker."""

    def __init__(self, breakers: Breakers) -> None:
        self._breakers = breakers

    def intercept_activity(
        self, next: worker.ActivityInboundInterceptor
    ) -> worker.ActivityInboundInterceptor:
        return _BreakerActivityInbound(next, self._breakers)
