"""An activity's error leaves the worker without credentials (issue 13 §3): the message Temporal
records, that the Web UI, the jobs API and alerts show, has the RPC key masked."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.client import WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from runtime.interceptors import RedactingInterceptor

KEY = "Zq8wX3vB6nM1kJ4hG7fD2sA9"


@activity.defn(name="test.leaky_rpc")
async def leaky_rpc() -> None:
    raise RuntimeError(f"Client error '401 Unauthorized' for url 'https://rpc.example/v2/{KEY}'")


@workflow.defn(name="TestLeakyRpc")
class LeakyRpc:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(
            leaky_rpc,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(maximum_attempts=1),
        )


async def test_the_recorded_failure_has_no_key(dev_env: WorkflowEnvironment) -> None:
    queue = f"redact-{uuid.uuid4().hex[:8]}"
    async with Worker(
        dev_env.client,
        task_queue=queue,
        workflows=[LeakyRpc],
        activities=[leaky_rpc],
        interceptors=[RedactingInterceptor()],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        handle = await dev_env.client.start_workflow(
            LeakyRpc.run, id=f"redact-{uuid.uuid4().hex}", task_queue=queue
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    activity_error = failed.value.cause
    assert isinstance(activity_error, ActivityError)
    cause = activity_error.cause
    assert cause is not None and "401 Unauthorized" in str(cause) and KEY not in str(cause)
    history = await handle.fetch_history()
    assert KEY not in history.to_json()
