"""A worker that dies inside a chain read is noticed within the liveness heartbeat, not after the
read's two-minute start-to-close timeout.

Measured in the short chaos run (CI, seed 14): a worker was SIGKILLed during the chain scanner's
``chain.scan``; the server waited the whole CHAIN_READ_TIMEOUT before retrying it, the scanner saw
no transfer for two minutes and seven paid intents were still open when the run ended. Here the
first attempt of ``chain.scan`` hangs without heartbeating, as a dead worker does; the scanner's
retry must come from a heartbeat timeout (policies.LIVENESS_HEARTBEAT), on the real dev server.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from temporalio import activity
from temporalio.api.enums.v1 import EventType, TimeoutType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHandle
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.liveness import keep_alive
from domain.deposit_watch import ChainScannerInput, ScanInput, ScannerConfig, ScanResult
from domain.queues import ActivityQueue
from tests.fixtures.stack import eventually
from tests.fixtures.temporal import new_prefix, running_workers
from workflows import policies
from workflows.chain_scanner import ChainScanner


async def test_a_scan_on_a_dead_worker_is_retried_on_a_heartbeat_timeout(
    dev_env: WorkflowEnvironment,
) -> None:
    attempts: list[int] = []
    never = asyncio.Event()

    @activity.defn(name="chain.scan")
    async def scan(request: ScanInput) -> ScanResult:
        attempts.append(activity.info().attempt)
        if activity.info().attempt == 1:
            await never.wait()  # a killed worker: no answer, no heartbeat
        return ScanResult(from_block=1, to_block=2, logs=0, matches=[])

    prefix = new_prefix()
    workflow_id = f"chain-scanner-liveness-{uuid.uuid4().hex[:8]}"
    async with running_workers(
        dev_env.client,
        prefix,
        workflows=[ChainScanner],
        activities={ActivityQueue.EVM_READ: [scan]},
    ) as queue:
        handle = await dev_env.client.start_workflow(
            ChainScanner.run,
            ChainScannerInput(
                chain="base",
                chain_id=31337,
                usdc_address="0x" + "11" * 20,
                config=ScannerConfig(interval_seconds=600, rounds_per_run=1),
                task_queue_prefix=prefix,
            ),
            id=workflow_id,
            task_queue=queue,
        )
        # before the fix the retry came after CHAIN_READ_TIMEOUT (120 s): this gave up first
        wait = policies.LIVENESS_HEARTBEAT.total_seconds() * 4
        await eventually(
            lambda: asyncio.sleep(0, attempts),
            lambda seen: 2 in seen,
            timeout=wait,
            what="the scan's second attempt",
        )
        retried = await eventually(
            lambda: _started_events(handle),
            lambda events: any(
                e.activity_task_started_event_attributes.attempt == 2 for e in events
            ),
            timeout=wait,
            what="the retry in the scanner's history",
        )
        await handle.terminate("test over")
    (second,) = [e for e in retried if e.activity_task_started_event_attributes.attempt == 2]
    failure = second.activity_task_started_event_attributes.last_failure
    assert failure.timeout_failure_info.timeout_type == TimeoutType.TIMEOUT_TYPE_HEARTBEAT


async def _started_events(handle: WorkflowHandle[Any, Any]) -> list[HistoryEvent]:
    history = await handle.fetch_history()
    return [e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED]


async def test_keep_alive_heartbeats_while_the_block_runs() -> None:
    beats: list[tuple[object, ...]] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details)

    async def slow_read() -> str:  # stands in for a chain read
        async with keep_alive(interval_seconds=0.05):
            await asyncio.sleep(0.3)
        return "done"

    assert await env.run(slow_read) == "done"
    assert len(beats) >= 3
    count = len(beats)
    await asyncio.sleep(0.2)
    assert len(beats) == count  # stopped with the block
