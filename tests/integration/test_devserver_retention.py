"""``python -m runtime.devserver`` (``make run``'s Temporal) sets the namespace's retention from
``TEMPORAL_RETENTION_DAYS`` once the server answers, and stops the server when it is stopped."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client

from runtime.temporal import namespace_retention
from tests.fixtures.stack import eventually
from tests.integration.test_worker_process import ROOT, free_port


async def test_the_dev_server_keeps_closed_executions_the_days_configured(
    tmp_path: Path,
) -> None:
    address = f"127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": address,
        "DEV_SERVER_UI_PORT": str(free_port()),
        "DEV_SERVER_DB_FILE": str(tmp_path / "temporal.db"),
        "TEMPORAL_RETENTION_DAYS": "11",
        "SETTLE_ENV": "test",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runtime.devserver", cwd=ROOT, env=env
    )
    try:

        async def retention() -> timedelta | None:
            try:
                client = await Client.connect(address)
                return await namespace_retention(client, client.namespace)
            except RuntimeError:  # not answering yet
                return None

        kept = await eventually(
            retention, lambda t: t == timedelta(days=11), timeout=30, what="the retention"
        )
        assert kept == timedelta(days=11)
    finally:
        process.send_signal(signal.SIGTERM)  # passed on to the server, as honcho's would be
        assert await asyncio.wait_for(process.wait(), 30) is not None
    # the server is gone with its launcher
    try:
        await Client.connect(address)
        reached = True
    except RuntimeError:
        reached = False
    assert not reached
