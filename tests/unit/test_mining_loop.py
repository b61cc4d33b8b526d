"""The test chain's mining loop stops when its context exits, even when the cancellation is
swallowed by what it awaits (Python 3.11's asyncio.wait_for could do that, CPython gh-86296: a
CI run hung for 10 minutes in a fixture waiting for the loop)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from tests.fixtures.chain import Chain


class SwallowingChain(Chain):
    """A chain whose ``mine`` swallows the first cancellation, as the buggy wait_for did."""

    def __init__(self) -> None:
        self.mined = 0
        self.swallowed = False

    async def rpc(self, method: str, *params: Any) -> Any:
        if self.swallowed:
            await asyncio.sleep(0.01)
        else:
            # the first request is still in flight when the context exits, whatever the load on
            # the machine (a sleep here let the cancel land between requests on a busy CI box)
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.swallowed = True  # the request completed as the cancel arrived: result wins
        self.mined += 1


async def test_the_mining_loop_stops_even_when_a_cancel_is_swallowed() -> None:
    chain = SwallowingChain()

    async def mine_a_while() -> None:
        async with chain.mining(every=0.001):
            await asyncio.sleep(0.05)

    clock = asyncio.get_running_loop()
    started = clock.time()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(3):  # before the fix: waits for the loop forever
            await mine_a_while()
    assert chain.swallowed
    assert clock.time() - started < 1.0, "the mining loop outlived its context"
    await asyncio.sleep(0.05)
    mined = chain.mined
    await asyncio.sleep(0.1)
    assert chain.mined == mined  # nothing mines after the context exited
