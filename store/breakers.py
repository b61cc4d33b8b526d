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
    calls: int = 1,
) -> Transition | None:
    """Count ``calls`` calls' outcomes, all successes but the last one, which ``failed`` or
    not; the transition they caused, if any. While open, outcomes (of calls already running when
    it opened) change nothing: the probe decides."""
    async with sessions.begin() as session:
        row = await _locked(session, scope, provider)
        now = await _now(session)
        if failed:
            row.last_error = (error or "")[:2000]
        if row.state == BreakerState.OPEN.value:
            return None
        if row.state == BreakerState.HALF_OPEN.value:
            if failed:
                _open(row, now, thresholds)
                return Transition.REOPENED
            _close(row, now)
            return Transition.CLOSED
        if row.window_start + timedelta(seconds=thresholds.window_seconds) < now:
            row.window_start, row.window_calls, row.window_failures = now, 0, 0
        row.window_calls += calls
        if not failed or calls > 1:
            row.consecutive_failures = 0
        if not failed:
            return None
        row.consecutive_failures += 1
        row.window_failures += 1
        rate_tripped = (
            row.window_calls >= thresholds.window_min_calls
            and row.window_failures / row.window_calls >= thresholds.error_rate
        )
        if row.consecutive_failures >= thresholds.consecutive_failures or rate_tripped:
            _open(row, now, thresholds)
            return Transition.OPENED
        return None


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


async def claim_half_open(
    sessions: async_sessionmaker[AsyncSession], scope: str, interval_seconds: float
) -> list[Provider]:
    """Half-open breakers not closed or reopened for a probe interval, each claimed by this
    caller alone (the next claim pushed an interval ahead). Half-open means the queue was let
    go; if the worker that let it go died between recording half-open and releasing the queue,
    the queue is still held, no call can close the breaker, and only this claim repairs it."""
    async with sessions.begin() as session:
        rows = await session.execute(
            update(CircuitBreaker)
            .where(
                CircuitBreaker.scope == scope,
                CircuitBreaker.state == BreakerState.HALF_OPEN.value,
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
