"""The worker dies between sending the USDC and its confirmation: the transfer is sent once.

The ``evm-write`` queue runs in a real ``python worker.py`` process on a chain that mines only when
told. Once the transaction is in the node's pool the process gets SIGKILL; a new worker takes the
confirmation wait over (after the heartbeat timeout), mining resumes, and the chain shows exactly
one transfer to the user.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

from sqlalchemy import func, select

import worker as worker_module
from domain.mpesa import DepositStatus, MpesaDepositInput
from domain.queues import workflow_queue
from domain.search import OperationKind, start_attributes
from operations.mpesa_deposits import deposit_config
from runtime.settings import Settings
from sandbox.serve import bind_socket
from store import accounts
from store.models import EvmTransaction
from store.models import MpesaDeposit as DepositRow
from tests.e2e.test_mpesa_deposit_api import usdc_for
from tests.fixtures.chain import Chain, new_wallet
from tests.fixtures.databases import assert_ledger_balanced
from tests.fixtures.stack import SANDBOX_SECRETS, Stack, eventually
from tests.fixtures.temporal import new_prefix
from tests.integration.test_wallet_writer import transfers_to
from workflows.mpesa_deposit import MpesaDeposit, workflow_id_for

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    return port


async def start_deposit(stack: Stack, settings: Settings, wallet: str, amount_kes: int = 25) -> str:
    deposit_id = str(uuid.uuid4())
    tenant = f"kill-{uuid.uuid4().hex[:6]}"
    async with stack.sessions.begin() as session:
        user = await accounts.get_or_create_user(session, tenant, "kim")
        session.add(
            DepositRow(
                id=deposit_id,
                tenant=tenant,
                user_id=user.id,
                phone="254708374149",
                amount_minor=amount_kes * 100,
                status=DepositStatus.INITIATED.value,
                workflow_id=workflow_id_for(deposit_id),
                wallet_address=wallet,
            )
        )
    await stack.temporal.start_workflow(
        MpesaDeposit.run,
        MpesaDepositInput(
            deposit_id=deposit_id,
            tenant=tenant,
            user_id=user.id,
            subject="kim",
            phone="254708374149",
            amount_minor=amount_kes * 100,
            account_reference="Settle",
            config=deposit_config(settings),
            task_queue_prefix=settings.task_queue_prefix,
            wallet_address=wallet,
        ),
        id=workflow_id_for(deposit_id),
        task_queue=workflow_queue(settings.task_queue_prefix),
        search_attributes=start_attributes(OperationKind.MPESA_DEPOSIT, tenant, "kim"),
    )
    return deposit_id


async def evm_worker(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "worker.py", "--queues", "evm-write", cwd=ROOT, env=env
    )


async def test_worker_killed_between_send_and_confirm_sends_once(
    stack: Stack, manual_chain: Chain
) -> None:
    settings = stack.settings.model_copy(
        update={
            "task_queue_prefix": new_prefix(),
            "evm_rpc_url": manual_chain.url,
            "evm_chain_id": manual_chain.chain_id,
            "evm_heartbeat_timeout_seconds": 3.0,
        }
    )
    env = {
        **os.environ,
        **{k.upper(): v for k, v in SANDBOX_SECRETS.items()},
        **{k.upper(): str(v) for k, v in manual_chain.settings().items()},
        "SETTLE_ENV": "test",
        "TEMPORAL_ADDRESS": stack.temporal.service_client.config.target_host,
        "DATABASE_URL": settings.database_url,
        "TASK_QUEUE_PREFIX": settings.task_queue_prefix,
        "WORKER_METRICS_BIND": f"127.0.0.1:{free_port()}",
        "WORKER_GRACEFUL_SHUTDOWN_SECONDS": "1",
    }
    # everything but evm-write runs here, against the manual chain
    resources = worker_module.build_resources(settings)
    workers = worker_module.build_workers(
        stack.temporal, settings, resources, ["workflows", "mpesa", "db", "fx"]
    )
    runs = [asyncio.create_task(w.run()) for w in workers]
    first = await evm_worker(env)
    second = None
    try:
        wallet = new_wallet()
        deposit_id = await start_deposit(stack, settings, wallet)
        row = await eventually(
            lambda: stack.deposit_row(deposit_id),
            lambda r: r is not None and r.usdc_tx_hash is not None,
            timeout=60,
            what="the USDC transfer to be submitted",
        )
        assert await manual_chain.client.transaction(row.usdc_tx_hash) is not None  # in the pool
        assert await manual_chain.client.receipt(row.usdc_tx_hash) is None  # not mined
        first.send_signal(signal.SIGKILL)
        await first.wait()

        second = await evm_worker(env)
        async with manual_chain.mining(0.2):
            credited = await stack.wait_for_deposit(
                deposit_id, {DepositStatus.CREDITED}, timeout=90
            )
        expected = usdc_for(stack, 25)
        assert await manual_chain.usdc_balance(wallet) == expected
        assert len(await transfers_to(manual_chain, wallet)) == 1
        assert credited.usdc_minor == expected
        async with stack.sessions() as session:
            sent = (
                await session.execute(
                    select(func.count())
                    .select_from(EvmTransaction)
                    .where(
                        EvmTransaction.idempotency_key.like(f"mpesa-deposit:{deposit_id}:usdc:%")
                    )
                )
            ).scalar_one()
        assert sent == 1
        await assert_ledger_balanced(stack.sessions)
    finally:
        for process in (first, second):
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()
        await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
        await asyncio.gather(*runs, return_exceptions=True)
        await resources.aclose()
