"""Engine and session factory (PostgreSQL through asyncpg; Settle has no other database).

:func:`make_read_session_factory` gives the sessions that only read (hot read paths such as idle
deposit watches looking for transfers); on PostgreSQL they are ordinary sessions on the same pool,
kept apart so that a read-only replica can be plugged in later without touching the callers.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from runtime import tracing


def make_engine(url: str, *, echo: bool = False, pool_size: int = 10) -> AsyncEngine:
    engine = create_async_engine(
        url, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
    )
    tracing.instrument_engine(engine)
    return engine


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def reads_of(sessions: async_sessionmaker[AsyncSession]) -> async_sessionmaker[AsyncSession]:
    """The read-only twin of a session factory (same engine and pool)."""
    return make_read_session_factory(sessions.kw["bind"])


def make_read_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for reading only."""
    return async_sessionmaker(engine, expire_on_commit=False)
