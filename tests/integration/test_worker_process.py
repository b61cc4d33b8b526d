"""``python worker.py`` as its own process: Prometheus metrics, and SIGTERM lets in-flight work finish."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

import httpx
from temporalio.api.enums.v1 import EventType

from domain.mpesa import DepositStatus, MpesaDepositConfig, MpesaDepositInput
from domain.queues import workflow_queue
from sandbox.serve import bind_socket
from store import accounts
from store.models import MpesaDeposit as DepositRow
from tests.fixtures.stack import SANDBOX_SECRETS, Stack, eventually
from tests.fixtures.temporal import new_prefix
from workflows.mpesa_deposit import MpesaDeposit

ROOT = Path(__file__).resolve().parents[2]
STK_PATH = "stkpush"  # the sandbox counts arrivals by path fragment


def free_port() -> int:
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    return port


async def test_sigterm_lets_the_in_flight_activity_finish(stack: Stack) -> None:
    prefix, metrics_port = new_prefix(), free_port()
    env = {
        **os.environ,
        **{k.upper(): v for k, v in SANDBOX_SECRETS.items()},
        "SETTLE_ENV": "test",
        "TEMPORAL_ADDRESS": stack.temporal.service_client.config.target_host,
        "DATABASE_URL": stack.settings.database_url,
        "DARAJA_BASE_URL": stack.daraja.url,
        "API_PUBLIC_URL": stack.settings.api_public_url,
        "TASK_QUEUE_PREFIX": prefix,
        "WORKER_METRICS_BIND": f"127.0.0.1:{metrics_port}",
        "WORKER_GRACEFUL_SHUTDOWN_SECONDS": "20",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "worker.py", "--queues", "workflows,mpesa,db", cwd=ROOT, env=env
    )
    try:
        async with httpx.AsyncClient() as http:
            metrics = await eventually(
                lambda: _get(http, f"http://127.0.0.1:{metrics_port}/metrics"),
                lambda text: text is not None and "temporal_" in text,
                timeout=30,
                what="the worker's Prometheus endpoint",
            )
        assert "temporal_worker_start" in metrics or "temporal_" in metrics

        deposit_id = str(uuid.uuid4())
        async with stack.sessions.begin() as session:
            user = await accounts.get_or_create_user(session, "worker-test", "wendy")
            session.add(
                DepositRow(
                    id=deposit_id,
                    tenant="worker-test",
                    user_id=user.id,
                    phone="254708374149",
                    amount_minor=500,
                    status=DepositStatus.INITIATED.value,
                    workflow_id=f"mpesa-deposit-{deposit_id}",
                )
            )
        stack.daraja_state.delays["stkpush"] = [1, 3.0]
        arrived = stack.daraja_state.arrivals.get(STK_PATH, 0)
        handle = await stack.temporal.start_workflow(
            MpesaDeposit.run,
            MpesaDepositInput(
                deposit_id=deposit_id,
                tenant="worker-test",
                user_id=user.id,
                subject="wendy",
                phone="254708374149",
                amount_minor=500,
                account_reference="Settle",
                config=MpesaDepositConfig(callback_wait_seconds=60),
                task_queue_prefix=prefix,
            ),
            id=f"mpesa-deposit-{deposit_id}",
            task_queue=workflow_queue(prefix),
        )
        await eventually(
            lambda: _value(stack.daraja_state.arrivals.get(STK_PATH, 0)),
            lambda n: n > arrived,
            timeout=30,
            what="the STK push to be in flight",
        )
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=30) == 0

        events = [e async for e in handle.fetch_history_events()]
        kinds = [e.event_type for e in events]
        assert EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED in kinds
        assert EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED not in kinds
        assert EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT not in kinds
        await handle.terminate("test over")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _get(http: httpx.AsyncClient, url: str) -> str | None:
    try:
        response = await http.get(url)
        return response.text if response.status_code == 200 else None
    except httpx.HTTPError:
        return None


async def _value(value: int) -> int:
    return value
