"""Benchmark: M-Pesa deposits through the API against the dev stack and the Daraja sandbox, and
raw Temporal throughput for a workflow with the same number of activities, in the same run.

    .venv/bin/python -m bench.mpesa_deposits [--deposits 200] [--concurrency 50] [--payout-batch]

``--payout-batch`` runs the stack with PAYOUT_BATCH_ENABLED (USDC payouts that arrive within
``--payout-batch-wait`` seconds go out as one Disperse transaction); gas per deposit is read from
the receipts of the credited deposits' transactions (a batch's gas shared by its deposits, the
one-time approval of Disperse included), so both modes can be compared.

Every component runs in its own process as under ``make run`` (the Temporal dev server on its
own SQLite file with WAL, Settle's database on an embedded PostgreSQL unless ``--database-url``
names one, sandbox, worker, API); this process only drives HTTP and watches the database.

The run ends by ``--deadline-seconds`` whatever happens. Deposits that fail or park
(``needs_attention``) are counted with their rows' reasons, and the exit status is 1 unless every
deposit was credited (see ``bench/outcomes.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
import uuid

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.auth import issue_token
from bench.noop import BenchNoop
from bench.outcomes import Deadline, Tally, explain, finish, run_main
from bench.stack import (
    BenchStack,
    Measured,
    activity_count,
    bench_stack,
    measured,
    read_workflows,
)
from domain.mpesa import DepositStatus
from providers.evm import EvmClient
from runtime.banner import DEMO_WALLET
from runtime.settings import Settings
from store.db import make_engine, make_session_factory
from store.models import EvmTransaction, MpesaDeposit

#: the default configuration (200 at 50, after a 20-deposit warm-up, then the raw run) takes
#: a few minutes on 2 cores, most of it the chain's 2 s blocks
DEADLINE_SECONDS = 900.0
#: deposit rows' statuses that end the deposit without crediting it
FAILED = {DepositStatus.FAILED, DepositStatus.ABANDONED}
#: the Daraja sandbox chooses an STK push's outcome by the phone's last four digits: this one pays
PHONE = "254708374149"
CALLBACK_DELAY = 0.2


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def read_deposits(
    sessions: async_sessionmaker[AsyncSession], tally: Tally, ids: list[str]
) -> None:
    """Settle deposits from their rows: credited, failed/abandoned, parked (needs_attention)
    with the row's failure reason; note what the others are doing."""
    async with sessions() as session:
        rows = await session.execute(
            select(
                MpesaDeposit.id,
                MpesaDeposit.status,
                MpesaDeposit.failure_reason,
                MpesaDeposit.result_desc,
            ).where(MpesaDeposit.id.in_(ids))
        )
    for deposit_id, status, failure_reason, result_desc in rows:
        reason = failure_reason or result_desc or ""
        if status == DepositStatus.CREDITED:
            tally.complete(deposit_id)
        elif status in FAILED:
            tally.fail(deposit_id, f"{status}: {reason}")
        elif status == DepositStatus.NEEDS_ATTENTION:
            tally.park(deposit_id, reason)
        else:
            tally.note(deposit_id, f"status {status}")


async def gas_figures(
    stack: BenchStack, sessions: async_sessionmaker[AsyncSession], ids: list[str]
) -> dict[str, float]:
    """Gas of the credited deposits' USDC transactions, from their receipts: each distinct
    transaction once (a batch is shared), plus the treasury's approvals of Disperse."""
    async with sessions() as session:
        hashes = set(
            (
                await session.execute(
                    select(MpesaDeposit.usdc_tx_hash).where(MpesaDeposit.id.in_(ids))
                )
            ).scalars()
        )
        approvals = set(
            (
                await session.execute(
                    select(EvmTransaction.mined_hash).where(
                        EvmTransaction.idempotency_key.startswith("payout-disperse-approve:")
                    )
                )
            ).scalars()
        )
    hashes.discard(None)
    approvals.discard(None)
    client = EvmClient(stack.env["EVM_RPC_URL"], chain_id=int(stack.env.get("EVM_CHAIN_ID", 31337)))
    try:
        gas = 0
        for tx_hash in hashes | approvals:
            receipt = await client.receipt(str(tx_hash))
            if receipt is not None:
                gas += int(receipt["gasUsed"], 16)
    finally:
        await client.aclose()
    return {
        "transactions": float(len(hashes)),
        "gas_per_deposit": gas / len(ids) if ids else float("nan"),
    }


async def run_deposits(
    stack: BenchStack,
    tally: Tally,
    concurrency: int,
    figures: dict[str, float],
    phone: str = PHONE,
) -> None:
    """``tally.expected`` deposits through the API, ``concurrency`` in flight, each until its row
    is final (credited, failed, or parked). Fills ``figures`` once all are settled."""
    # the API process reads the same environment: same JWT secret, same database
    settings = Settings(_env_file=None, database_url=stack.env["DATABASE_URL"])
    token = issue_token(
        settings, subject="bench", tenant=f"bench-{uuid.uuid4().hex[:6]}", roles=["user"]
    )
    headers = {"Authorization": f"Bearer {token}"}
    initiate_latency: list[float] = []
    gate = asyncio.Semaphore(concurrency)
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    workflow_ids: dict[str, str] = {}

    async def one(http: httpx.AsyncClient, n: int) -> None:
        async with gate:
            t0 = time.perf_counter()
            try:
                response = await http.post(
                    "/api/v1/deposit/initiate",
                    json={"phone": phone, "amount": 100, "wallet_address": DEMO_WALLET},
                    headers=headers,
                )
            except httpx.HTTPError as exc:
                tally.fail(f"request-{n}", f"initiate: {type(exc).__name__}: {exc}")
                return
            if response.is_error:
                tally.fail(
                    f"request-{n}", f"initiate answered {response.status_code}: {response.text}"
                )
                return
            initiate_latency.append(time.perf_counter() - t0)
            deposit_id = response.json()["id"]
            tally.start(deposit_id, t0)
            workflow_ids[deposit_id] = response.json()["workflow_id"]
            # hold the slot until settled, so `concurrency` deposits are in flight at once (a
            # watcher that died is raised below)
            while not tally.is_settled(deposit_id) and not watcher.done():
                await asyncio.sleep(0.02)

    async def watch() -> None:
        while not tally.finished:
            if pending := tally.open():
                await read_deposits(sessions, tally, pending)
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch())
    try:
        t_start = time.perf_counter()
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=60) as http:
            await asyncio.gather(*(one(http, n) for n in range(tally.expected)))
            await watcher
        elapsed = time.perf_counter() - t_start
        credited = tally.durations()
        figures.update(
            {
                "per_second": len(credited) / elapsed,
                "credit_p50": percentile(credited, 0.5),
                "credit_p99": percentile(credited, 0.99),
                "initiate_p50": percentile(initiate_latency, 0.5),
                "initiate_p99": percentile(initiate_latency, 0.99),
            }
        )
        if tally.completed:
            first = workflow_ids[next(iter(tally.completed))]
            figures["activities"] = await activity_count(stack, first)
            figures.update(await gas_figures(stack, sessions, list(tally.completed)))
    finally:
        watcher.cancel()
        # the deadline may have cut the run short: say what the open deposits are waiting on
        await explain(tally, lambda ids: read_deposits(sessions, tally, ids))
        await engine.dispose()


async def run_raw(
    stack: BenchStack,
    tally: Tally,
    concurrency: int,
    activities: int,
    figures: dict[str, float],
) -> None:
    """``tally.expected`` BenchNoop workflows with ``activities`` no-op activities each, on a
    worker process of their own, ``concurrency`` at a time."""
    client = await stack.temporal()
    queue = f"bench-noop-{uuid.uuid4().hex[:6]}"
    worker = await stack.spawn(sys.executable, "-m", "bench.noop_worker", queue, name="noop-worker")
    gate = asyncio.Semaphore(concurrency)
    workflow_ids: dict[str, str] = {}

    async def one(n: int | None) -> None:
        async with gate:
            workflow_id = f"noop-{uuid.uuid4()}"
            op = f"noop-{n}" if n is not None else "warm-up"
            workflow_ids[op] = workflow_id
            t0 = time.perf_counter()
            if n is not None:
                tally.start(op, t0)
            try:
                await client.execute_workflow(
                    BenchNoop.run, activities, id=workflow_id, task_queue=queue
                )
            except Exception as exc:
                if n is None:
                    raise
                tally.fail(op, f"{type(exc).__name__}: {exc}")
                return
            if n is not None:
                tally.complete(op)

    try:
        await one(None)  # warm-up: the worker is polling
        t_start = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(tally.expected)))
        elapsed = time.perf_counter() - t_start
        latencies = tally.durations()
        figures.update(
            {
                "per_second": len(latencies) / elapsed,
                "p50": percentile(latencies, 0.5),
                "p99": percentile(latencies, 0.99),
            }
        )
    finally:
        await explain(tally, lambda ids: read_workflows(stack, tally, workflow_ids))
        worker.terminate()


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deposits", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument(
        "--callback-delay",
        type=float,
        default=CALLBACK_DELAY,
        help="sandbox seconds before the callback",
    )
    parser.add_argument(
        "--phone",
        default=PHONE,
        help="the sandbox picks the outcome by its last 4 digits (sandbox/daraja.py); "
        "default: one that pays",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="an external PostgreSQL (an empty database); default: an embedded one of its own",
    )
    parser.add_argument(
        "--deadline-seconds",
        type=float,
        default=DEADLINE_SECONDS,
        help="seconds from the start by which the run ends (default %(default).0f)",
    )
    parser.add_argument(
        "--payout-batch",
        action="store_true",
        help="PAYOUT_BATCH_ENABLED: USDC payouts batched through Disperse",
    )
    parser.add_argument(
        "--payout-batch-wait",
        type=float,
        default=2.0,
        help="PAYOUT_BATCH_WAIT_SECONDS with --payout-batch (default %(default)g)",
    )
    parser.add_argument(
        "--evm-confirmations",
        type=int,
        default=None,
        help="EVM_CONFIRMATIONS for the stack (at least 1; default: the settings' default)",
    )
    parser.add_argument(
        "--block-time",
        type=float,
        default=2.0,
        help="anvil's block time in seconds (default 2, like Base): with --evm-confirmations 1 "
        "and a short block time the chain's block waits mostly leave the deposit",
    )
    parser.add_argument(
        "--profile",
        metavar="NAME",
        help="py-spy flame graphs of the worker and the API over the measured deposits, "
        "to bench/profiles/NAME-worker.svg and NAME-api.svg",
    )
    args = parser.parse_args()
    deadline = Deadline(args.deadline_seconds)
    warm_up = Tally("warm-up deposits", min(20, args.deposits))
    tally = Tally("deposits", args.deposits)
    raw_tally = Tally("raw BenchNoop workflows", args.deposits)
    deposits: dict[str, float] = {}
    raw: dict[str, float] = {}
    cpu = Measured()
    extra: dict[str, str] = (
        {
            "PAYOUT_BATCH_ENABLED": "true",
            "PAYOUT_BATCH_WAIT_SECONDS": str(args.payout_batch_wait),
        }
        if args.payout_batch
        else {}
    )
    if args.evm_confirmations is not None:
        extra["EVM_CONFIRMATIONS"] = str(args.evm_confirmations)
    async with (
        bench_stack(
            args.database_url, args.callback_delay, block_time=args.block_time, extra_env=extra
        ) as stack,
        deadline.bound(),
    ):
        await run_deposits(stack, warm_up, 10, {}, args.phone)
        async with measured(stack, args.profile) as cpu:
            await run_deposits(stack, tally, args.concurrency, deposits, args.phone)
        if "activities" in deposits:
            activities = int(deposits["activities"])
            await run_raw(stack, raw_tally, args.concurrency, activities, raw)
    db = "external PostgreSQL" if args.database_url else "embedded PostgreSQL"
    command = (
        f"python -m bench.mpesa_deposits --deposits {args.deposits} "
        f"--concurrency {args.concurrency}"
    )
    if args.callback_delay != CALLBACK_DELAY:
        command += f" --callback-delay {args.callback_delay:g}"
    if args.phone != PHONE:
        command += f" --phone {args.phone}"
    if args.database_url:
        command += f" --database-url {args.database_url}"
    if args.payout_batch:
        command += f" --payout-batch --payout-batch-wait {args.payout_batch_wait:g}"
    if args.evm_confirmations is not None:
        command += f" --evm-confirmations {args.evm_confirmations}"
    if args.block_time != 2.0:
        command += f" --block-time {args.block_time:g}"
    if args.profile:
        command += f" --profile {args.profile}"

    def ms(value: float) -> str:
        return f"{value * 1000:.0f} ms"

    lines = [
        f"M-Pesa deposits, {args.deposits} at concurrency {args.concurrency}, "
        f"sandbox callback after {args.callback_delay}s, {db}"
        + (
            f", EVM_CONFIRMATIONS={args.evm_confirmations}"
            if args.evm_confirmations is not None
            else ""
        )
        + (f", {args.block_time:g} s blocks" if args.block_time != 2.0 else "")
        + ", payouts "
        + (f"batched (wait {args.payout_batch_wait:g}s)" if args.payout_batch else "one by one"),
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}",
    ]
    if deposits:
        lines += [
            f"  deposits/s (request -> credited)   {deposits['per_second']:.1f}",
            f"  request -> credited p50 / p99      {ms(deposits['credit_p50'])} / {ms(deposits['credit_p99'])}",
            f"  initiate call p50 / p99            {ms(deposits['initiate_p50'])} / {ms(deposits['initiate_p99'])}",
            f"  CPU per deposit                    {cpu.per_op(len(tally.completed))}",
        ]
    if "gas_per_deposit" in deposits:
        lines += [
            f"  USDC transactions (credited)       {deposits['transactions']:.0f}",
            f"  gas per deposit (from receipts)    {deposits['gas_per_deposit']:.0f}",
        ]
    if "activities" in deposits and raw:
        activities = int(deposits["activities"])
        lines += [
            f"one deposit runs {activities} activities (from its history)",
            f"raw Temporal, BenchNoop with {activities} no-op activities, same server, same concurrency",
            f"  workflows/s                        {raw['per_second']:.1f}",
            f"  start -> result p50 / p99          {ms(raw['p50'])} / {ms(raw['p99'])}",
            f"ratio deposits/s : raw workflows/s   {deposits['per_second'] / raw['per_second']:.2f}",
        ]
    lines.append(f"reproduce: .venv/bin/{command}")
    print("\n" + "\n".join(lines) + "\n")
    return finish([warm_up, tally, raw_tally], deadline)


if __name__ == "__main__":
    run_main(main)
