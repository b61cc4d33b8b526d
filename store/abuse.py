"""Per-minute counters behind the abuse limits (``runtime/settings/abuse.py``).

A fixed one-minute window per (limit, subject), counted with one upsert in the transaction that
writes the operation's row: the row lock of ``ON CONFLICT DO UPDATE`` serialises concurrent
requests on one counter, so at most ``per_minute`` pass in a window whatever the number of API
replicas, and a refused request rolls its own increment back (hammering does not push the
window). Subjects that are personal data (phone numbers) are stored hashed.

Lock order: routes take the counters last in their transaction (after the user's row) and in the
order of their ``Limit`` list, the tenant-wide one last, so two requests of one tenant never
wait on each other's locks in opposite orders (a deadlock the first-run test found).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import RateLimited
from store.models import AbuseCounter

#: counters older than this are deleted as new windows open
KEEP = timedelta(minutes=10)


@dataclass(frozen=True)
class Limit:
    #: what is limited, e.g. ``stk_per_phone`` (part of the key and of the error)
    name: str
    #: whose count: a phone (hashed), ``tenant/user``, a tenant
    subject: str
    per_minute: int
    #: the request field the 429 names
    field: str
    #: how the error describes it, e.g. "STK pushes to this phone number"
    what: str


def hashed(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


async def take(session: AsyncSession, limits: Sequence[Limit], now: datetime | None = None) -> None:
    """Count one operation against each limit; 429 (``RateLimited``) past any of them."""
    now = now or datetime.now(UTC)
    window = now.replace(second=0, microsecond=0)
    for limit in limits:
        if limit.per_minute <= 0:
            continue
        statement = (
            insert(AbuseCounter)
            .values(key=f"{limit.name}:{limit.subject}", window_start=window, count=1)
            .on_conflict_do_update(
                index_elements=[AbuseCounter.key, AbuseCounter.window_start],
                set_={"count": AbuseCounter.count + 1},
            )
            .returning(AbuseCounter.count)
        )
        count = int((await session.execute(statement)).scalar_one())
        if count == 1:  # a new window: forget old ones
            await session.execute(
                delete(AbuseCounter).where(AbuseCounter.window_start < now - KEEP)
            )
        if count > limit.per_minute:
            retry_after = int((window + timedelta(minutes=1) - now).total_seconds()) + 1
            raise RateLimited(
                f"{limit.what}: at most {limit.per_minute} per minute; try again in "
                f"{retry_after} s (nothing was started)",
                retry_after_seconds=retry_after,
                field=limit.field,
            )
