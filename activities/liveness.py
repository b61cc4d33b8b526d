"""Heartbeats that say "this worker is still alive", for activities whose run time varies.

A worker killed mid-activity is noticed by the server only when a timeout passes. With just a
start-to-close timeout sized for the slowest run (a chain read catching up thousands of blocks),
every crash stalled the step for that whole timeout: the chain scanner, killed mid-scan, stopped
seeing deposits for two minutes. ``keep_alive`` heartbeats on a timer while the activity runs,
so the workflow can set a short ``heartbeat_timeout`` (``policies.LIVENESS_HEARTBEAT``) and a
dead worker's step is retried within seconds, while a slow but live run is left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from temporalio import activity


@contextlib.asynccontextmanager
async def keep_alive(interval_seconds: float = 2.0) -> AsyncIterator[None]:
    """Heartbeat every ``interval_seconds`` until the block ends (nothing outside an activity)."""
    if not activity.in_activity():
        yield
        return

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(interval_seconds)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
