"""The worker dies in the middle of a mint: the purchase still ends with exactly one NFT.

The ``solana`` queue runs in a real ``python worker.py`` process. The sandbox executes the mint
transaction and holds its answer back; the process is killed (SIGKILL) in that window. Another
worker retries the activity after its timeout, finds the ticket's NFT at its derived address, and
mints nothing more.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

import httpx
from solders.keypair import Keypair

import worker as worker_module
from domain.queues import workflow_queue
from domain.search import OperationKind, start_attributes
from domain.tickets import PurchaseStatus, TicketPurchaseInput
from operations.tickets_common import ticket_config
from sandbox.serve import bind_socket
from store import accounts, tickets
from store.models import TicketPurchase as PurchaseRow
from tests.fixtures.stack import SANDBOX_SECRETS, Stack, eventually
from tests.fixtures.temporal import new_prefix
from workflows.tickets import TicketPurchase, purchase_workflow_id

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    return port


async def test_worker_killed_mid_mint_leaves_one_nft(stack: Stack) -> None:
    settings = stack.settings.model_copy(
        update={"task_queue_prefix": new_prefix(), "solana_activity_timeout_seconds": 4.0}
    )
    env = {
        **os.environ,
        **{k.upper(): v for k, v in SANDBOX_SECRETS.items()},
        **{k.upper(): str(v) for k, v in stack.solana.settings().items()},
        "SETTLE_ENV": "test",
        "TEMPORAL_ADDRESS": stack.temporal.service_client.config.target_host,
        "DATABASE_URL": settings.database_url,
        "TASK_QUEUE_PREFIX": settings.task_queue_prefix,
        "WORKER_METRICS_BIND": f"127.0.0.1:{free_port()}",
    }
    resources = worker_module.build_resources(settings)
    workers = worker_module.build_workers(
        stack.temporal, settings, resources, ["workflows", "stripe", "notify", "db"]
    )
    runs = [asyncio.create_task(w.run()) for w in workers]

    async def solana_worker() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "worker.py", "--queues", "solana", cwd=ROOT, env=env
        )

    first = await solana_worker()
    second = None
    try:
        purchase_id, buyer, tenant = (
            str(uuid.uuid4()),
            str(Keypair().pubkey()),
            f"kill-{uuid.uuid4().hex[:6]}",
        )
        async with stack.sessions.begin() as session:
            user = await accounts.get_or_create_user(session, tenant, "kit")
            await tickets.hold_seat(session, tenant, "evt-k", "K1", purchase_id)
            session.add(
                PurchaseRow(
                    id=purchase_id,
                    tenant=tenant,
                    user_id=user.id,
                    event_id="evt-k",
                    seat="K1",
                    amount_minor=2500,
                    currency="usd",
                    buyer_email="kit@example.com",
                    buyer_wallet=buyer,
                    status="paying",
                    workflow_id=purchase_workflow_id(purchase_id),
                    amount_captured=0,
                    amount_refunded=0,
                )
            )
        async with httpx.AsyncClient() as http:
            await http.post(f"{stack.solana.url}/_sandbox/delay-next-mint", json={"seconds": 8})
        minted_before = stack.solana.sandbox.transactions
        handle = await stack.temporal.start_workflow(
            TicketPurchase.run,
            TicketPurchaseInput(
                purchase_id=purchase_id,
                tenant=tenant,
                user_id=user.id,
                subject="kit",
                event_id="evt-k",
                seat="K1",
                amount_minor=2500,
                currency="usd",
                payment_method="pm_card_visa",
                buyer_email="kit@example.com",
                buyer_wallet=buyer,
                metadata_uri="https://t/k.json",
                config=ticket_config(settings),
                task_queue_prefix=settings.task_queue_prefix,
            ),
            id=purchase_workflow_id(purchase_id),
            task_queue=workflow_queue(settings.task_queue_prefix),
            search_attributes=start_attributes(OperationKind.TICKET_PURCHASE, tenant, "kit"),
        )
        # the mint transaction has executed (the NFT exists) but its answer is held back
        await eventually(
            lambda: _value(stack.solana.sandbox.transactions),
            lambda n: n > minted_before,
            timeout=60,
            what="the mint to execute",
        )
        first.send_signal(signal.SIGKILL)
        await first.wait()
        second = await solana_worker()
        state = await asyncio.wait_for(handle.result(), 90)
        assert state.status == PurchaseStatus.COMPLETED
        client = stack.solana.sandbox.svm
        from spl.token.constants import TOKEN_2022_PROGRAM_ID

        mints_of_ticket = [
            key
            for key, account in client.get_program_accounts(TOKEN_2022_PROGRAM_ID)
            if len(account.data) > 166 and purchase_id.encode() in bytes(account.data)
        ]
        assert len(mints_of_ticket) == 1
        assert str(mints_of_ticket[0]) == state.mint
    finally:
        for process in (first, second):
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()
        await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
        await asyncio.gather(*runs, return_exceptions=True)
        await resources.aclose()


async def _value(value: int) -> int:
    return value
