"""Fleet-wide concurrency limits as leases on N rows (``concurrency_slots``).

The Temporal server has no concurrency cap per task queue (``max_concurrent_activities`` is per
worker, so two workers run twice as many), and its rate limit bounds starts per second, not how
many run at once. A limit that must hold for every worker together is therefore N rows in
PostgreSQL: a holder takes a free one with ``SELECT ... FOR UPDATE SKIP LOCKED`` (no two takers
get the same row, none waits on another's lock), gives it back at the end, and renews it while
it works. A lease expires after its TTL, so a worker killed while holding a slot does not leak it
for longer than that. Times are the database's clock, the one every worker shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from runtime.logging import get_logger
from store.models import ConcurrencySlot

log = get_logger("store.leases")

_TAKE = text(
    """
    UPDATE concurrency_slots SET holder = :holder, expires_at = now() + :ttl * interval '1 second'
    WHERE (name, slot) = (
        SELECT name, slot FROM concurrency_slots
        WHERE name = :name AND slot < :limit AND (holder IS NULL OR expires_at < now())
        ORDER BY slot LIMIT 1 FOR UPDATE SKIP LOCKED
    )
    RETURNING slot
    """
)
_RENEW = text(
    "UPDATE concurrency_slots SET expires_at = now() + :ttl * interval '1 second' "
    "WHERE name = :name AND slot = :slot AND holder = :holder"
)
_GIVE_BACK = text(
    "UPDATE concurrency_slots SET holder = NULL, expires_at = NULL "
    "WHERE name = :name AND slot = :slot AND holder = :holder"
)


@dataclass(frozen=True)
class SlotLimit:
    """At most ``limit`` holders of ``name`` at once across the fleet."""

    name: str
    limit: int
    #: a lease not renewed for this long is free again (a killed holder)
    ttl_seconds: float
    #: how often a waiting taker looks for a free slot again
    poll_seconds: float = 0.05


#: limits whose rows this process has created (a cache: creating them again is harmless)
_ENSURED: set[tuple[str, int]] = set()


async def ensure_slots(sessions: async_sessionmaker[AsyncSession], limit: SlotLimit) -> None:
    """Create the limit's rows (idempotent; more rows than the limit are simply not taken)."""
    if (limit.name, limit.limit) in _ENSURED:
        return
    async with sessions.begin() as session:
        await session.execute(
            insert(ConcurrencySlot)
            .values([{"name": limit.name, "slot": i} for i in range(limit.limit)])
            .on_conflict_do_nothing()
        )
    _ENSURED.add((limit.name, limit.limit))


async def try_take(
    sessions: async_sessionmaker[AsyncSession], limit: SlotLimit, holder: str
) -> int | None:
    async with sessions.begin() as session:
        slot = (
            await session.execute(
                _TAKE,
                {
                    "name": limit.name,
                    "limit": limit.limit,
                    "holder": holder,
                    "ttl": limit.ttl_seconds,
                },
            )
        ).scalar_one_or_none()
    return None if slot is None else int(slot)


async def give_back(
    sessions: async_sessionmaker[AsyncSession], limit: SlotLimit, slot: int, holder: str
) -> None:
    async with sessions.begin() as session:
        await session.execute(_GIVE_BACK, {"name": limit.name, "slot": slot, "holder": holder})


async def held(sessions: async_sessionmaker[AsyncSession], name: str) -> list[str]:
    """Holders of live leases on ``name`` now (what tests and operators look at)."""
    async with sessions() as session:
        rows = await session.execute(
            text(
                "SELECT holder FROM concurrency_slots WHERE name = :name "
                "AND holder IS NOT NULL AND expires_at >= now() ORDER BY slot"
            ),
            {"name": name},
        )
        return [str(r[0]) for r in rows]


@contextlib.asynccontextmanager
async def fleet_slot(
    sessions: async_sessionmaker[AsyncSession],
    limit: SlotLimit,
    holder: str,
    *,
    waiting: Callable[[], Awaitable[None] | None] | None = None,
) -> AsyncIterator[int]:
    """Hold one of the limit's slots for the body: wait for a free one (calling ``waiting``
    between looks, e.g. an activity heartbeat), renew it every third of its TTL, give it back
    at the end whatever happens."""
    await ensure_slots(sessions, limit)
    while (slot := await try_take(sessions, limit, holder)) is None:
        if waiting is not None:
            result = waiting()
            if result is not None:
                await result
        # jitter: takers that missed together do not all look again together
        await asyncio.sleep(limit.poll_seconds * (0.5 + random.random()))  # noqa: S311

    async def renew() -> None:
        while True:
            await asyncio.sleep(limit.ttl_seconds / 3)
            async with sessions.begin() as session:
                await session.execute(
                    _RENEW,
                    {"name": limit.name, "slot": slot, "holder": holder, "ttl": limit.ttl_seconds},
                )

    renewing = asyncio.create_task(renew())
    try:
        yield slot
    finally:
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await renewing
        # shielded: a cancelled activity still gives its slot back (else it waits out the TTL)
        await asyncio.shield(give_back(sessions, limit, slot, holder))
