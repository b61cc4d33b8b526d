"""Circuit breaker rows: every worker's provider-call outcomes counted in one place.

Each outcome is one locked read-modify-write of the provider's row, so the fleet's calls trip the
breaker together and exactly one worker sees the transition (and holds the queue, raises the
alert). Times are the database's clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.breakers import BreakerState, Provider
from store.models import CircuitBreaker


@dataclass(frozen=True)
class Thresholds:
    consecutive_failures: int
    window_seconds: float
    window_min_calls: int
    error_rate: float
    probe_interval_seconds: float


class Transition(StrEnum):
    OPENED = "opened"
    #: a call failed right after the probe let the queue go
    REOPENED = "reopened"
    HALF_OPENED = "half_opened"
    CLOSED = "closed"


async def _now(session: AsyncSession) -> datetime:
    now: datetime = (await session.execute(select(func.now()))).scalar_one()
    return now


async def _locked(session: AsyncSession, scope: str, provider: Provider) -> CircuitBreaker:
    """The provider's row, locked for this transaction (created closed the first time)."""
    query = (
        select(CircuitBreaker)
        .where(CircuitBreaker.scope == scope, CircuitBreaker.provider == provider.value)
        .with_for_update()
    )
    row = (await session.execute(query)).scalar_one_or_none()
    if row is not None:
        return row
    now = await _now(session)
    await session.execute(
        insert(CircuitBreaker)
        .values(
            scope=scope,
            provider=provider.value,
            state=BreakerState.CLOSED.value,
            consecutive_failures=0,
            window_start=now,
            window_calls=0,
            window_failures=0,
            changed_at=now,
        )
        .on_conflict_do_nothing()
    )
    return (await session.execute(query)).scalar_one()


def _open(row: CircuitBreaker, now: datetime, thresholds: Thresholds) -> None:
    row.state = BreakerState.OPEN.value
    row.opened_at, row.changed_at = now, now
    row.next_probe_at = now + timedelta(seconds=thresholds.probe_interval_seconds)


def _close(row: CircuitBreaker, now: datetime) -> None:
    row.state = BreakerState.CLOSED.value
    row.consecutive_failures, row.window_calls, row.window_failures = 0, 0, 0
    row.window_start, row.changed_at, row.next_probe_at = now, now, None


async def record(
    sessions: async_sessionmaker[AsyncSession],
    scope: str,
    provider: Provider,
    *,
    failed: bool,
    error: str | None,
    thresholds: Thresholds,
) -> Transition | None:
    """Count one call's outcome; the transition it caused, if any. While open, outcomes (of
    calls already running when it opened) change nothing: the probe decides."""
    counted = await record_outcome(
        sessions, scope, provider, failed=failed, error=error, thresholds=thresholds
    )
    return counted.transition


async def record_outcome(
    sessions: async_sessionmaker[AsyncSession],
    scope: str,
    provider: Provider,
    *,
    failed: bool,
    error: str | None,
    thresholds: Thresholds,
    earlier_successes: int = 0,
) -> Flushed:
    """:func:`record`, and whether the row is clean after it. ``earlier_successes`` (counted in
    memory since the last flush) join the rate window first, as :func:`record_successes` adds
    them, so a failure is judged against every call the worker saw."""
    async with sessions.begin() as session:
        row = await _locked(session, scope, provider)
        now = await _now(session)
        if failed:
            row.last_error = (error or "")[:2000]
        if row.state == BreakerState.OPEN.value:
            return Flushed(None, False)
        if row.state == BreakerState.HALF_OPEN.value:
            if failed:
                _open(row, now, thresholds)
                return Flushed(Transition.REOPENED, False)
            _close(row, now)
            return Flushed(Transition.CLOSED, True)
        if row.window_start + timedelta(seconds=thresholds.window_seconds) < now:
            row.window_start, row.window_calls, row.window_failures = now, 0, 0
        row.window_calls += 1 + max(0, earlier_successes)
        if not failed:
            row.consecutive_failures = 0
            return Flushed(None, True)
        row.consecutive_failures += 1
        row.window_failures += 1
        rate_tripped = (
            row.window_calls >= thresholds.window_min_calls
            and row.window_failures / row.window_calls >= thresholds.error_rate
        )
        if row.consecutive_failures >= thresholds.consecutive_failures or rate_tripped:
            _open(row, now, thresholds)
            return Flushed(Transition.OPENED, False)
        return Flushed(None, False)


@dataclass(frozen=True)
class Flushed:
    """What a flush of successes found: the transition it caused, and whether the row is clean
    (closed, no failure since the last success), so the next successes may be counted in memory."""

    transition: Transition | None
    clean: bool


def is_clean(row: CircuitBreaker) -> bool:
    return row.state == BreakerState.CLOSED.value and row.consecutive_failures == 0


async def record_successes(
    sessions: async_sessionmaker[AsyncSession],
    scope: str,
    provider: Provider,
    count: int,
    thresholds: Thresholds,
) -> Flushed:
    """Add ``count`` successes a worker counted in memory while the row was clean. They go into
    the rate window only: they happened before the flush, maybe before another worker's failures,
    so they do not reset the consecutive count. On a half-open row they close it, as a success
    counted at once would have."""
    async with sessions.begin() as session:
        row = await _locked(session, scope, provider)
        if count <= 0 or row.state == BreakerState.OPEN.value:
            return Flushed(None, is_clean(row))
        now = await _now(session)
        if row.state == BreakerState.HALF_OPEN.value:
            _close(row, now)
            return Flushed(Transition.CLOSED, True)
        if row.window_start + timedelta(seconds=thresholds.window_seconds) < now:
            row.window_start, row.window_calls, row.window_failures = now, 0, 0
        row.window_calls += count
        return Flushed(None, is_clean(row))


async def claim_probes(
    sessions: async_sessionmaker[AsyncSession], scope: str, interval_seconds: float
) -> list[Provider]:
    """Open breakers whose probe is due, each claimed by this caller alone (the next one is
    pushed a probe interval ahead in the same statement)."""
    async with sessions.begin() as session:
        rows = await session.execute(
            update(CircuitBreaker)
            .where(
                CircuitBreaker.scope == scope,
                CircuitBreaker.state == BreakerState.OPEN.value,
                CircuitBreaker.next_probe_at <= func.now(),
            )
            .values(next_probe_at=func.now() + timedelta(seconds=interval_seconds))
            .returning(CircuitBreaker.provider)
        )
        return [Provider(p) for p in rows.scalars()]


async def probed(
    sessions: async_sessionmaker[AsyncSession],
    scope: str,
    provider: Provider,
    *,
    answered: bool,
    error: str | None,
) -> Transition | None:
    """The probe's outcome: an answer turns an open breaker half-open (its queue is let go)."""
    async with sessions.begin() as session:
        row = await _locked(session, scope, provider)
        if not answered:
            row.last_error = (error or "")[:2000]
            return None
        if row.state != BreakerState.OPEN.value:
            return None
        row.state, row.changed_at = BreakerState.HALF_OPEN.value, await _now(session)
        return Transition.HALF_OPENED


async def states(
    sessions: async_sessionmaker[AsyncSession], scope: str
) -> dict[Provider, CircuitBreaker]:
    """Every provider's breaker row in ``scope`` (a provider without one is closed)."""
    async with sessions() as session:
        rows = await session.execute(select(CircuitBreaker).where(CircuitBreaker.scope == scope))
        return {Provider(r.provider): r for r in rows.scalars()}
