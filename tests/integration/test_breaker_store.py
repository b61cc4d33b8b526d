"""The breaker rows and the concurrency leases on the real database: transitions as every worker
sees them, one probe per interval whoever asks, and a lease that outlives its holder expiring."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from api.task_queue_limits import describe, hold
from domain.breakers import BreakerState, Provider, holder
from runtime.breakers import Breakers
from runtime.settings import Settings
from store import breakers
from store.breakers import Thresholds, Transition
from store.leases import SlotLimit, fleet_slot, held, try_take

THRESHOLDS = Thresholds(
    consecutive_failures=3,
    window_seconds=60,
    window_min_calls=10,
    error_rate=0.5,
    probe_interval_seconds=0.3,
)


def scope() -> str:
    return f"s{uuid.uuid4().hex[:8]}-"


async def _record(
    sessions: async_sessionmaker[AsyncSession], s: str, failed: bool, t: Thresholds = THRESHOLDS
) -> Transition | None:
    return await breakers.record(
        sessions, s, Provider.STRIPE, failed=failed, error="503" if failed else None, thresholds=t
    )


async def _state(sessions: async_sessionmaker[AsyncSession], s: str) -> str:
    return (await breakers.states(sessions, s))[Provider.STRIPE].state


async def test_consecutive_failures_open_a_success_resets_the_count(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    s = scope()
    assert [await _record(sessions, s, f) for f in (True, True, False, True, True)] == [None] * 5
    assert await _record(sessions, s, True) == Transition.OPENED
    # while open, outcomes of calls already running change nothing
    assert await _record(sessions, s, False) is None
    assert await _state(sessions, s) == BreakerState.OPEN
    # another provider is untouched
    assert Provider.SMTP not in await breakers.states(sessions, s)


async def test_successes_counted_together_fill_the_window_and_end_a_run_of_failures(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A worker counts its successes together (one write for many calls): they count in the
    error rate's window like single ones, and successes before a failure end the run before it."""
    s = scope()
    assert await _record(sessions, s, True) is None
    assert await _record(sessions, s, True) is None
    ok = await breakers.record(
        sessions, s, Provider.STRIPE, failed=True, error="503", thresholds=THRESHOLDS, calls=4
    )
    assert ok is None  # 3 successes, then a failure: a run of 1, not 3
    row = (await breakers.states(sessions, s))[Provider.STRIPE]
    assert row.window_calls == 6 and row.window_failures == 3 and row.consecutive_failures == 1
    await breakers.record(
        sessions, s, Provider.STRIPE, failed=False, error=None, thresholds=THRESHOLDS, calls=7
    )
    row = (await breakers.states(sessions, s))[Provider.STRIPE]
    assert row.window_calls == 13 and row.consecutive_failures == 0
    assert row.state == BreakerState.CLOSED


async def test_the_error_rate_opens_without_a_run_of_failures(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    s = scope()
    outcomes = [True, False] * 4 + [True]  # 9 calls: under the minimum of 10
    assert [await _record(sessions, s, f) for f in outcomes] == [None] * 9
    assert await _record(sessions, s, False) is None  # 10 calls, 5 failed: checked on a failure
    assert await _record(sessions, s, True) == Transition.OPENED  # 11 calls, 6 failed


async def test_one_probe_per_interval_then_half_open_closes_or_reopens(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    s = scope()
    for _ in range(3):
        await _record(sessions, s, True)
    assert await breakers.claim_probes(sessions, s, 0.3) == []  # not due yet
    await asyncio.sleep(0.35)
    # several workers ask at once: one gets the probe
    claims = await asyncio.gather(*(breakers.claim_probes(sessions, s, 0.3) for _ in range(4)))
    assert sorted(len(c) for c in claims) == [0, 0, 0, 1]
    assert await breakers.probed(sessions, s, Provider.STRIPE, answered=False, error="down") is None
    assert await _state(sessions, s) == BreakerState.OPEN
    answered = await breakers.probed(sessions, s, Provider.STRIPE, answered=True, error=None)
    assert answered == Transition.HALF_OPENED
    # the first call after the probe decides: a failure opens it again ...
    assert await _record(sessions, s, True) == Transition.REOPENED
    await asyncio.sleep(0.35)
    assert await breakers.claim_probes(sessions, s, 0.3) == [Provider.STRIPE]
    await breakers.probed(sessions, s, Provider.STRIPE, answered=True, error=None)
    # ... a success closes it, with the counts reset
    assert await _record(sessions, s, False) == Transition.CLOSED
    row = (await breakers.states(sessions, s))[Provider.STRIPE]
    assert (row.state, row.consecutive_failures, row.window_calls) == ("closed", 0, 0)


async def test_a_lease_its_holder_never_gave_back_expires_after_its_ttl(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    limit = SlotLimit(name=f"{scope()}credentials", limit=2, ttl_seconds=1.0)
    async with fleet_slot(sessions, limit, "a"):
        # a holder killed mid-submit: took a slot, will never give it back
        assert await try_take(sessions, limit, "killed") is not None
        assert await try_take(sessions, limit, "b") is None  # both slots held
        assert sorted(await held(sessions, limit.name)) == ["a", "killed"]
        await asyncio.sleep(1.2)
        # "a" renews its lease while it works; the killed holder's expired
        assert await held(sessions, limit.name) == ["a"]
        assert await try_take(sessions, limit, "b") is not None
    assert await held(sessions, limit.name) == ["b"]


async def test_a_breaker_left_half_open_with_its_queue_held_is_released_again(
    sessions: async_sessionmaker[AsyncSession], dev_env: WorkflowEnvironment
) -> None:
    """The chaos run's stuck deposits: the worker that probed Daraja recorded half-open and was
    killed before letting the queue go. The queue stayed at 0, no call could close the breaker,
    and claim_probes only takes open ones. One probe interval later any worker releases it."""
    s = scope()
    settings = Settings(_env_file=None, task_queue_prefix=s, breaker_probe_interval_seconds=0.3)
    fleet = Breakers(dev_env.client, sessions, settings, {Provider.STRIPE: _answers})
    for _ in range(3):
        await _record(sessions, s, True)
    (task_queue,) = [q for _, q in fleet._queues(Provider.STRIPE)]
    await hold(dev_env.client, task_queue, holder(Provider.STRIPE), "breaker test")
    await asyncio.sleep(0.35)
    assert await breakers.claim_probes(sessions, s, 0.3) == [Provider.STRIPE]
    # the probe answered and half-open was recorded; the worker died before releasing
    assert await breakers.probed(sessions, s, Provider.STRIPE, answered=True, error=None) == (
        Transition.HALF_OPENED
    )
    assert await breakers.claim_half_open(sessions, s, 0.3) == []  # not due yet
    await fleet.probe_due()
    assert (await describe(dev_env.client, task_queue)).stopped  # still held
    await asyncio.sleep(0.35)
    await fleet.probe_due()
    released = await describe(dev_env.client, task_queue)
    assert not released.stopped and released.holders == []
    # claimed by one worker per interval
    assert await breakers.claim_half_open(sessions, s, 0.3) == []


async def _answers() -> None:
    return None
