"""A parked deposit is retried (and another abandoned) with the ``temporal`` CLI binary, exactly as
the README tells an operator to do it."""

from __future__ import annotations

import asyncio
import uuid

from temporalio.testing import WorkflowEnvironment

from domain.mpesa import DepositStatus, DepositStep, MpesaDepositConfig, MpesaDepositInput
from domain.search import SETTLE_STATUS, OperationKind, start_attributes
from runtime.devserver import temporal_cli
from tests.fixtures.stack import eventually
from tests.fixtures.temporal import new_prefix, running_workers
from tests.unit.test_mpesa_deposit_workflow import FakeMpesa, success
from workflows.mpesa_deposit import MpesaDeposit


async def cli(env: WorkflowEnvironment, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        temporal_cli(),
        *args,
        "--address",
        env.client.service_client.config.target_host,
        "--namespace",
        env.client.namespace,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def start_parked(env: WorkflowEnvironment, fake: FakeMpesa, prefix: str):
    deposit_id = str(uuid.uuid4())
    tenant = f"dl-{uuid.uuid4().hex[:6]}"
    handle = await env.client.start_workflow(
        MpesaDeposit.run,
        MpesaDepositInput(
            deposit_id=deposit_id,
            tenant=tenant,
            user_id="u",
            subject="s",
            phone="254708374149",
            amount_minor=15000,  # what the callback of ``success()`` says was paid
            account_reference="Settle",
            config=MpesaDepositConfig(credit_max_attempts=2, credit_initial_interval_seconds=0.1),
            task_queue_prefix=prefix,
        ),
        id=f"mpesa-deposit-{deposit_id}",
        task_queue=f"{prefix}workflows",
        search_attributes=start_attributes(OperationKind.MPESA_DEPOSIT, tenant, "s"),
    )
    await eventually(
        lambda: handle.query(MpesaDeposit.status),
        lambda s: s.step == DepositStep.AWAIT_CALLBACK,
        what="awaiting callback",
    )
    await handle.signal(MpesaDeposit.mpesa_callback, success())
    await eventually(
        lambda: handle.query(MpesaDeposit.status),
        lambda s: s.status == DepositStatus.NEEDS_ATTENTION,
        what="needs_attention",
    )
    return handle, tenant


async def test_parked_deposit_retried_and_abandoned_with_the_temporal_cli(
    dev_env: WorkflowEnvironment,
) -> None:
    fake = FakeMpesa(credit_failures=2)
    fake.client = dev_env.client  # Transaction Status results are signalled with it
    prefix = new_prefix()
    async with running_workers(
        dev_env.client, prefix, workflows=[MpesaDeposit], activities=fake.activities()
    ):
        handle, tenant = await start_parked(dev_env, fake, prefix)
        listed = await cli(
            dev_env,
            "workflow",
            "list",
            "--query",
            f'SettleTenant="{tenant}" AND SettleStatus="needs_attention"',
        )
        assert handle.id in listed

        await cli(dev_env, "workflow", "signal", "--workflow-id", handle.id, "--name", "retry")
        state = await asyncio.wait_for(handle.result(), 60)  # a lost signal fails, not hangs
        assert state.status == DepositStatus.CREDITED
        assert len(fake.credits) == 3
        assert (await handle.describe()).typed_search_attributes.get(SETTLE_STATUS) == "succeeded"

        fake.credit_failures = 100
        handle, _ = await start_parked(dev_env, fake, prefix)
        await cli(
            dev_env,
            "workflow",
            "signal",
            "--workflow-id",
            handle.id,
            "--name",
            "abandon",
            "--input",
            '"refunded by hand"',
        )
        state = await asyncio.wait_for(handle.result(), 60)  # a lost signal fails, not hangs
        assert state.status == DepositStatus.ABANDONED
        assert state.failure_reason == "refunded by hand"
