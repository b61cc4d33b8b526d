"""Benchmark: verification jobs per second for a 1 MB file, against the dev stack (separate
processes as ``make run`` starts them: Temporal dev server on SQLite, sandboxes with the IPFS
gateway and anvil's ContentRegistry, ``worker.py``, the API).

    .venv/bin/python -m bench.verification [--jobs 200] [--concurrency 20] [--size-mb 1]

One file is published (signed manifest on the sandbox gateway, registered on chain), then
``--jobs`` uploads of it are posted through ``POST /api/verification-jobs/verify``,
``--concurrency`` at a time, and the run ends when every job's row is completed. Figures: jobs
per second over the run, and the latency from upload to completion (p50/p99) from the rows'
``created_at``/``completed_at``. The same uploads are then sent to a second API process that
cannot reach Temporal (the inline fallback), for the cost of the steps without the workflow.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid

import httpx
from sqlalchemy import select

from api.auth import issue_token
from bench.stack import BenchStack, bench_stack, free_port, wait_http
from providers.evm import EvmClient
from providers.ipfs import IpfsGateway
from runtime.settings import Settings
from sandbox.content import SANDBOX_CREATOR_KEY, publish
from store.db import make_engine, make_session_factory
from store.models import VerificationJob


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def post_all(
    api_url: str, headers: dict[str, str], data: bytes, manifest_uri: str, jobs: int, limit: int
) -> list[dict[str, object]]:
    gate = asyncio.Semaphore(limit)
    async with httpx.AsyncClient(base_url=api_url, timeout=120) as http:

        async def one() -> dict[str, object]:
            async with gate:
                response = await http.post(
                    "/api/verification-jobs/verify",
                    files={"file": ("document.bin", data, "application/octet-stream")},
                    data={"manifestURI": manifest_uri},
                    headers=headers,
                )
                response.raise_for_status()
                body: dict[str, object] = response.json()
                return body

        return await asyncio.gather(*(one() for _ in range(jobs)))


async def finished_rows(settings: Settings, tenant: str, count: int) -> list[VerificationJob]:
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    try:
        while True:
            async with sessions() as session:
                rows = (
                    (
                        await session.execute(
                            select(VerificationJob).where(VerificationJob.tenant == tenant)
                        )
                    )
                    .scalars()
                    .all()
                )
            done = [r for r in rows if r.status in ("completed", "failed")]
            if len(done) >= count:
                return list(done)
            await asyncio.sleep(0.1)
    finally:
        await engine.dispose()


def report(label: str, rows: list[VerificationJob], elapsed: float) -> None:
    latencies = [
        (r.completed_at - r.created_at).total_seconds() for r in rows if r.completed_at is not None
    ]
    verified = sum(1 for r in rows if r.result and '"status":"verified"' in r.result)
    print(
        f"  {label}: {len(rows) / elapsed:.1f} jobs/s over {elapsed:.1f} s; "
        f"upload -> completed p50 {statistics.median(latencies):.2f} s, "
        f"p99 {percentile(latencies, 0.99):.2f} s; {verified}/{len(rows)} verified",
        flush=True,
    )


async def run(stack: BenchStack, jobs: int, concurrency: int, size: int) -> None:
    settings = Settings(_env_file=None, database_url=stack.env["DATABASE_URL"])
    data = os.urandom(size)
    chain = EvmClient(stack.anvil_url, chain_id=31337)
    gateway = IpfsGateway(stack.env["IPFS_GATEWAY_URL"], timeout_seconds=30, max_bytes=size * 2)
    try:
        content = await publish(
            chain, gateway, settings.content_registry_address, SANDBOX_CREATOR_KEY, data
        )
    finally:
        await chain.aclose()
        await gateway.aclose()
    for label, api_url in (("workflow (async)", stack.api_url), ("inline, Temporal down", None)):
        tenant = f"bench-{uuid.uuid4().hex[:6]}"
        token = issue_token(settings, subject="bench", tenant=tenant, roles=["user"])
        headers = {"Authorization": f"Bearer {token}"}
        if api_url is None:
            port = free_port()
            env = {**stack.env, "API_PORT": str(port), "TEMPORAL_ADDRESS": "127.0.0.1:9"}
            stack.env, saved = env, stack.env
            try:
                await stack.spawn(sys.executable, "-m", "api", name="api-inline")
            finally:
                stack.env = saved
            api_url = f"http://127.0.0.1:{port}"
            await wait_http(f"{api_url}/health/live")
        started = time.perf_counter()
        await post_all(api_url, headers, data, content.manifest_uri, jobs, concurrency)
        rows = await finished_rows(settings, tenant, jobs)
        report(label, rows, time.perf_counter() - started)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--size-mb", type=float, default=1.0)
    args = parser.parse_args()
    size = int(args.size_mb * 1024 * 1024)
    print(
        f"reproduce: .venv/bin/python -m bench.verification --jobs {args.jobs} "
        f"--concurrency {args.concurrency} --size-mb {args.size_mb:g}",
        flush=True,
    )
    print(
        f"Verification of a {size:,} byte file, {args.jobs} jobs, {args.concurrency} at a time, "
        f"{os.cpu_count()} cores",
        flush=True,
    )
    async with bench_stack(None, 0.2) as stack:
        await run(stack, args.jobs, args.concurrency, size)


if __name__ == "__main__":
    asyncio.run(main())
    sys.stdout.flush()
    os._exit(0)
