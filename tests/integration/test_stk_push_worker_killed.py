"""The worker dies after Daraja accepted an STK push and before its CheckoutRequestID came back
(issue 14 §1): the customer is prompted once, and the payment is credited once.

The ``mpesa`` queue runs in a real ``python worker.py`` process. The sandbox accepts the push and
holds its HTTP answer back; the process gets SIGKILL in that window, with the attempt's row
written (``sending``) and no CheckoutRequestID on it. A new worker takes the pushes that follow:
they find the attempt unresolved and its prompt not yet expired, so nothing is sent; the payment's
callback is matched to that attempt (same phone and amount, soon after it), and adopted.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import uuid
from pathlib import Path

from sqlalchemy import select

import worker as worker_module
from domain.mpesa import DepositStatus, MpesaDepositInput
from domain.queues import workflow_queue
from domain.search import OperationKind, start_attributes
from operations.mpesa_deposits import deposit_config
from sandbox.daraja import SUCCESS, outcome_for
from sandbox.serve import bind_socket
from store import accounts
from store.models import Alert, MpesaPushAttempt, MpesaUnmatchedPayment
from store.models import MpesaDeposit as DepositRow
from tests.e2e.test_mpesa_deposit_api import ledger_entries_for, usdc_for
from tests.fixtures.databases import assert_ledger_balanced
from tests.fixtures.stack import SANDBOX_SECRETS, Stack, eventually
from tests.fixtures.temporal import new_prefix
from workflows.mpesa_deposit import MpesaDeposit, workflow_id_for

ROOT = Path(__file__).resolve().parents[2]
#: the prompt is on the phone this long: pushes after the kill must not prompt again
PROMPT_SECONDS = 60.0
#: the customer pays this long after the prompt (after the first retried push)
PAYS_AFTER_SECONDS = 10.0


def free_port() -> int:
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    return port


def fresh_phone() -> str:
    """A phone of its own, whose sandbox outcome is a plain success."""
    while True:
        phone = f"2547{secrets.randbelow(10**8):08d}"
        if outcome_for(phone) is SUCCESS:
            return phone


async def mpesa_worker(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "worker.py", "--queues", "mpesa", cwd=ROOT, env=env
    )


async def attempts_of(stack: Stack, deposit_id: str) -> list[MpesaPushAttempt]:
    async with stack.sessions() as session:
        rows = await session.execute(
            select(MpesaPushAttempt)
            .where(MpesaPushAttempt.deposit_id == deposit_id)
            .order_by(MpesaPushAttempt.attempt)
        )
        return list(rows.scalars())


async def test_worker_killed_after_the_push_was_accepted_prompts_once_credits_once(
    stack: Stack,
) -> None:
    settings = stack.settings.model_copy(
        update={
            "task_queue_prefix": new_prefix(),
            # the push activity times out 4 s after the kill; the workflow then pushes again
            "daraja_timeout_seconds": 2.0,
            "mpesa_push_resolve_seconds": 1.0,
            "mpesa_stk_push_initial_interval_seconds": 0.5,
            "mpesa_stk_push_max_attempts": 10,
            "mpesa_stk_prompt_expiry_seconds": PROMPT_SECONDS,
        }
    )
    env = {
        **os.environ,
        **{k.upper(): v for k, v in SANDBOX_SECRETS.items()},
        **{k.upper(): str(v) for k, v in stack.chain.settings().items()},
        **{k.upper(): str(v) for k, v in stack.solana.settings().items()},
        "SETTLE_ENV": "test",
        "TEMPORAL_ADDRESS": stack.temporal.service_client.config.target_host,
        "DATABASE_URL": settings.database_url,
        "TASK_QUEUE_PREFIX": settings.task_queue_prefix,
        "DARAJA_BASE_URL": settings.daraja_base_url,
        "API_PUBLIC_URL": settings.api_public_url,
        "MPESA_STK_PROMPT_EXPIRY_SECONDS": str(PROMPT_SECONDS),
        "WORKER_METRICS_BIND": f"127.0.0.1:{free_port()}",
        "WORKER_GRACEFUL_SHUTDOWN_SECONDS": "1",
    }
    resources = worker_module.build_resources(settings)
    workers = worker_module.build_workers(
        stack.temporal, settings, resources, ["workflows", "db", "fx", "evm-write", "evm-read"]
    )
    runs = [asyncio.create_task(w.run()) for w in workers]
    first = await mpesa_worker(env)
    second = None
    try:
        phone, tenant, deposit_id = fresh_phone(), f"kill-{uuid.uuid4().hex[:6]}", str(uuid.uuid4())
        wallet = "0x" + secrets.token_hex(20)
        async with stack.sessions.begin() as session:
            user = await accounts.get_or_create_user(session, tenant, "kofi")
            session.add(
                DepositRow(
                    id=deposit_id,
                    tenant=tenant,
                    user_id=user.id,
                    phone=phone,
                    amount_minor=3_000,
                    status=DepositStatus.INITIATED.value,
                    workflow_id=workflow_id_for(deposit_id),
                    wallet_address=wallet,
                )
            )
        pushes_before = stack.daraja_state.stk_pushes
        # the push is accepted, its answer held back for a minute; the customer pays later
        stack.daraja_state.holds = [1, 60.0, PAYS_AFTER_SECONDS]
        await stack.temporal.start_workflow(
            MpesaDeposit.run,
            MpesaDepositInput(
                deposit_id=deposit_id,
                tenant=tenant,
                user_id=user.id,
                subject="kofi",
                phone=phone,
                amount_minor=3_000,
                account_reference="Settle",
                config=deposit_config(settings),
                task_queue_prefix=settings.task_queue_prefix,
                wallet_address=wallet,
            ),
            id=workflow_id_for(deposit_id),
            task_queue=workflow_queue(settings.task_queue_prefix),
            search_attributes=start_attributes(OperationKind.MPESA_DEPOSIT, tenant, "kofi"),
        )

        def prompts() -> list[str]:
            return [
                t.checkout_request_id
                for t in stack.daraja_state.transactions.values()
                if t.phone == phone
            ]

        async def now_prompts() -> list[str]:
            return prompts()

        await eventually(now_prompts, lambda p: len(p) == 1, timeout=60, what="the push")
        first.send_signal(signal.SIGKILL)
        await first.wait()
        # killed after Daraja accepted the push, before its CheckoutRequestID was recorded
        [attempt] = await attempts_of(stack, deposit_id)
        assert attempt.state == "sending" and attempt.checkout_request_id is None

        second = await mpesa_worker(env)
        row = await stack.wait_for_deposit(deposit_id, {DepositStatus.CREDITED}, timeout=120)

        # exactly one prompt at Daraja, and it is the one the deposit follows and credited
        assert prompts() == [row.checkout_request_id]
        assert stack.daraja_state.stk_pushes - pushes_before == 1
        [attempt] = await attempts_of(stack, deposit_id)
        assert attempt.state == "adopted"
        assert attempt.checkout_request_id == row.checkout_request_id
        # the workflow did push again (a later execution of the activity), which sent nothing
        state = await stack.temporal.get_workflow_handle(
            workflow_id_for(deposit_id), result_type=type(None)
        ).query(MpesaDeposit.status)
        assert state.pushes_sent >= 2
        # one credit, one ledger entry; the callback's payment adopted, no alert left open
        assert await ledger_entries_for(stack, deposit_id) == 1
        assert row.usdc_minor == usdc_for(stack, 30)
        async with stack.sessions() as session:
            payment = (
                await session.execute(
                    select(MpesaUnmatchedPayment).where(
                        MpesaUnmatchedPayment.checkout_request_id == row.checkout_request_id
                    )
                )
            ).scalar_one()
            open_alerts = (
                await session.execute(
                    select(Alert).where(
                        Alert.value == row.checkout_request_id, Alert.status == "open"
                    )
                )
            ).all()
        assert payment.status == "adopted" and payment.deposit_id == deposit_id
        assert open_alerts == []
        await assert_ledger_balanced(stack.sessions)
    finally:
        for process in (first, second):
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()
        await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
        await asyncio.gather(*runs, return_exceptions=True)
        await resources.aclose()
