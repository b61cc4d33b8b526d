"""The breaker rows and the concurrency leases on the real database: transitions as every worker
sees them, one probe per interval whoever asks, and a lease that outlives its holder expiring."""

from __future__ import annotations

import asyncio
import uuid
from typing import cast

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from domain.breakers import BreakerState, Provider, is_unavailable
from domain.errors import StripeUnavailable
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


async def test_successes_on_a_clean_row_are_counted_in_memory_and_flushed(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A worker counts successes in memory while the row is clean and adds them on its loop's
    flush; a failure (its own or another worker's, read on the next tick) sends outcomes to the
    row at once again, so a success still resets the run of failures."""
    s = scope()
    settings = Settings(_env_file=None).model_copy(
        update={"task_queue_prefix": s, "breaker_consecutive_failures": 3}
    )
    # no transition needs the Temporal client here (nothing opens)
    ours = Breakers(cast(Client, None), sessions, settings, probes={})
    theirs = Breakers(cast(Client, None), sessions, settings, probes={})

    async def row() -> tuple[str, int, int]:
        r = (await breakers.states(sessions, s))[Provider.STRIPE]
        return r.state, r.consecutive_failures, r.window_calls

    await ours.outcome(Provider.STRIPE, None)  # the row is not known yet: counted on it
    assert await row() == ("closed", 0, 1)
    for _ in range(5):
        await ours.outcome(Provider.STRIPE, None)
    assert await row() == ("closed", 0, 1)  # in memory
    await ours.flush()
    assert await row() == ("closed", 0, 6)

    unavailable = StripeUnavailable("503 Service Unavailable")
    assert is_unavailable(Provider.STRIPE, unavailable)
    await ours.outcome(Provider.STRIPE, None)  # in memory again
    await theirs.outcome(Provider.STRIPE, unavailable)
    await theirs.outcome(Provider.STRIPE, unavailable)
    assert await row() == ("closed", 2, 8)  # their failures; our pending success not yet
    await ours.gauges()  # the loop's tick: ours now knows the row is not clean
    await ours.outcome(Provider.STRIPE, None)  # on the row at once, with the pending one
    assert await row() == ("closed", 0, 10)
    await ours.outcome(Provider.STRIPE, None)
    await ours.flush()
    assert await row() == ("closed", 0, 11)
