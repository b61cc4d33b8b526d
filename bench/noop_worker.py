"""``python -m bench.noop_worker QUEUE``: serve BenchNoop in its own process, like worker.py."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from temporalio.worker import Worker

from bench.noop import BenchNoop, noop
from runtime.settings import get_settings
from runtime.temporal import connect_with_retry


async def main(queue: str) -> None:
    client = await connect_with_retry(get_settings())
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with Worker(client, task_queue=queue, workflows=[BenchNoop], activities=[noop]):
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
    os._exit(0)
