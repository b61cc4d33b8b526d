"""Benchmark: M-Pesa deposits through the API against the dev stack and the Daraja sandbox, and
raw Temporal throughput for a workflow with the same number of activities, in the same run.

    .venv/bin/python -m bench.mpesa_deposits [--deposits 200] [--concurrency 50]

Every component runs in its own process as under ``make run`` (dev server on a SQLite file with
WAL, sandbox, worker, API); this process only drives HTTP and watches the database.
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

from api.auth import issue_token
from bench.noop import ACTIVITIES, BenchNoop
from bench.stack import BenchStack, activity_count, bench_stack
from runtime.banner import DEMO_WALLET
from runtime.settings import Settings
from runtime.temporal import connect
from store.db import make_engine, make_session_factory
from store.models import MpesaDeposit


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run_deposits(stack: BenchStack, count: int, concurrency: int) -> dict[str, float]:
    # the API process reads the same environment: same JWT secret, same database
    settings = Settings(_env_file=None, database_url=stack.env["DATABASE_URL"])
    token = issue_token(
        settings, subject="bench", tenant=f"bench-{uuid.uuid4().hex[:6]}", roles=["user"]
    )
    headers = {"Authorization": f"Bearer {token}"}
    started: dict[str, float] = {}
    initiate_latency: list[float] = []
    gate = asyncio.Semaphore(concurrency)
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    credited: dict[str, float] = {}
    workflow_ids: list[str] = []

    async def one(http: httpx.AsyncClient) -> None:
        async with gate:
            t0 = time.perf_counter()
            response = await http.post(
                "/api/v1/deposit/initiate",
                json={"phone": "254708374149", "amount": 100, "wallet_address": DEMO_WALLET},
                headers=headers,
            )
            response.raise_for_status()
            initiate_latency.append(time.perf_counter() - t0)
            started[response.json()["id"]] = t0
            workflow_ids.append(response.json()["workflow_id"])
            # hold the slot until credited, so `concurrency` deposits are in flight at once
            while response.json()["id"] not in credited:
                await asyncio.sleep(0.02)

    async def watch() -> None:
        while len(credited) < count:
            pending = [i for i in started if i not in credited]
            if pending:
                async with sessions() as session:
                    rows = await session.execute(
                        select(MpesaDeposit.id).where(
                            MpesaDeposit.id.in_(pending), MpesaDeposit.status == "credited"
                        )
                    )
                now = time.perf_counter()
                for (deposit_id,) in rows:
                    credited[deposit_id] = now
            await asyncio.sleep(0.02)

    t_start = time.perf_counter()
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=60) as http:
        watcher = asyncio.create_task(watch())
        await asyncio.gather(*(one(http) for _ in range(count)))
        await watcher
    elapsed = time.perf_counter() - t_start
    await engine.dispose()
    to_credit = [credited[i] - started[i] for i in started]
    return {
        "per_second": count / elapsed,
        "elapsed": elapsed,
        "credit_p50": percentile(to_credit, 0.5),
        "credit_p99": percentile(to_credit, 0.99),
        "initiate_p50": percentile(initiate_latency, 0.5),
        "initiate_p99": percentile(initiate_latency, 0.99),
        "activities": await activity_count(stack, workflow_ids[0]),
    }


async def run_raw(
    stack: BenchStack, count: int, concurrency: int, activities: int = ACTIVITIES
) -> dict[str, float]:
    settings = Settings(_env_file=None, temporal_address=stack.temporal_address)
    client = await connect(settings)
    queue = f"bench-noop-{uuid.uuid4().hex[:6]}"
    worker = await stack.spawn(sys.executable, "-m", "bench.noop_worker", queue, name="noop-worker")
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one() -> None:
        async with gate:
            t0 = time.perf_counter()
            await client.execute_workflow(
                BenchNoop.run, activities, id=f"noop-{uuid.uuid4()}", task_queue=queue
            )
            latencies.append(time.perf_counter() - t0)

    await one()  # warm-up: the worker is polling
    latencies.clear()
    t_start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    elapsed = time.perf_counter() - t_start
    worker.terminate()
    return {
        "per_second": count / elapsed,
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deposits", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument(
        "--callback-delay", type=float, default=0.2, help="sandbox seconds before the callback"
    )
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    async with bench_stack(args.database_url, args.callback_delay) as stack:
        await run_deposits(stack, min(20, args.deposits), 10)  # warm-up
        deposits = await run_deposits(stack, args.deposits, args.concurrency)
        activities = int(deposits["activities"])
        raw = await run_raw(stack, args.deposits, args.concurrency, activities)
    db = "PostgreSQL" if args.database_url else "SQLite (WAL)"
    command = f"python -m bench.mpesa_deposits --deposits {args.deposits} --concurrency {args.concurrency}"
    if args.database_url:
        command += f" --database-url {args.database_url}"

    def ms(value: float) -> str:
        return f"{value * 1000:.0f} ms"

    lines = [
        f"M-Pesa deposits, {args.deposits} at concurrency {args.concurrency}, "
        f"sandbox callback after {args.callback_delay}s, {db}",
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}",
        f"  deposits/s (request -> credited)   {deposits['per_second']:.1f}",
        f"  request -> credited p50 / p99      {ms(deposits['credit_p50'])} / {ms(deposits['credit_p99'])}",
        f"  initiate call p50 / p99            {ms(deposits['initiate_p50'])} / {ms(deposits['initiate_p99'])}",
        f"one deposit runs {activities} activities (from its history)",
        f"raw Temporal, BenchNoop with {activities} no-op activities, same server, same concurrency",
        f"  workflows/s                        {raw['per_second']:.1f}",
        f"  start -> result p50 / p99          {ms(raw['p50'])} / {ms(raw['p99'])}",
        f"ratio deposits/s : raw workflows/s   {deposits['per_second'] / raw['per_second']:.2f}",
        f"reproduce: .venv/bin/{command}",
    ]
    print("\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
    sys.stdout.flush()
    os._exit(0)
