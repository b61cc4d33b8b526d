"""Engine and session factory (PostgreSQL through asyncpg; Settle has no other database).

:func:`make_read_session_factory` gives the sessions that only read (hot read paths such as idle
deposit watches looking for transfers); on PostgreSQL they are ordinary sessions on the same pool,
kept apart so that a read-only replica can be plugged in later without touching the callers.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from runtime import tracing

#: a pooled connection idle for longer than this is pinged before it is handed out
PING_AFTER_IDLE_SECONDS = 2.0


def make_engine(url: str, *, echo: bool = False, pool_size: int = 10) -> AsyncEngine:
    engine = create_async_engine(url, echo=echo, pool_size=pool_size, max_overflow=pool_size)
    ping_idle_connections(engine)
    tracing.instrument_engine(engine)
    return engine


def ping_idle_connections(
    engine: AsyncEngine, idle_seconds: float = PING_AFTER_IDLE_SECONDS
) -> None:
    """Ping a pooled connection before use only when it sat idle for ``idle_seconds``.

    ``pool_pre_ping`` pings on every checkout, and asyncpg's ping is three round trips (BEGIN,
    a statement, ROLLBACK): the profiles of the benchmarks showed it at 5-6 % of the worker's and
    the API's CPU, on connections used a moment before. A connection that went bad while busy
    (the server restarted) fails its statement once; SQLAlchemy then sees the disconnect and
    recycles every connection of the pool, as it does with pre-ping on."""
    pool = engine.sync_engine.pool

    @event.listens_for(pool, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info["settle_idle_since"] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("settle_idle_since")
        if since is None or time.monotonic() - since < idle_seconds:
            return
        try:
            dbapi_connection.ping()
        except Exception as error:
            # the pool discards this connection and checks out another one
            raise exc.DisconnectionError(str(error)) from error


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def reads_of(sessions: async_sessionmaker[AsyncSession]) -> async_sessionmaker[AsyncSession]:
    """The read-only twin of a session factory (same engine and pool)."""
    return make_read_session_factory(sessions.kw["bind"])


def make_read_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for reading only."""
    return async_sessionmaker(engine, expire_on_commit=False)
