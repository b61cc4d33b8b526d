"""Benchmark: verification jobs per second for a 1 MB file, against the dev stack (separate
processes as ``make run`` starts them: Temporal dev server on its own SQLite file, Settle's
database on an embedded PostgreSQL, sandboxes with the IPFS gateway and anvil's
ContentRegistry, ``worker.py``, the API).

    .venv/bin/python -m bench.verification [--jobs 200] [--concurrency 20] [--size-mb 1]

One file is published (signed manifest on the sandbox gateway, registered on chain), then
``--jobs`` uploads of it are posted through ``POST /api/verification-jobs/verify``,
``--concurrency`` at a time, and the run ends when every job's row is completed. Figures: jobs
per second over the run, and the latency from upload to completion (p50/p99) from the rows'
``created_at``/``completed_at``. The same uploads are then sent to a second API process that
cannot reach Temporal (the inline fallback), for the cost of the steps without the workflow.

The run ends by ``--deadline-seconds`` whatever happens. Jobs that fail, or complete with
another verdict than ``verified``, are counted with their rows' errors, and the exit status is 1
unless every job verified (see ``bench/outcomes.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.auth import issue_token
from bench.mpesa_deposits import percentile
from bench.outcomes import Deadline, Tally, explain, finish, run_main
from bench.stack import BenchStack, bench_stack, free_port, measured, wait_http
from providers.evm import EvmClient
from providers.ipfs import IpfsGateway
from runtime.settings import Settings
from sandbox.content import SANDBOX_CREATOR_KEY, publish
from store.db import make_engine, make_session_factory
from store.models import VerificationJob

#: the default configuration (200 jobs twice: through the workflow, then inline) takes about a
#: minute on 2 cores once the stack is up
DEADLINE_SECONDS = 600.0


async def post_all(
    api_url: str,
    headers: dict[str, str],
    data: bytes,
    manifest_uri: str,
    tally: Tally,
    limit: int,
) -> None:
    gate = asyncio.Semaphore(limit)
    async with httpx.AsyncClient(base_url=api_url, timeout=120) as http:

        async def one(n: int) -> None:
            async with gate:
                t0 = time.perf_counter()
                try:
                    response = await http.post(
                        "/api/verification-jobs/verify",
                        files={"file": ("document.bin", data, "application/octet-stream")},
                        data={"manifestURI": manifest_uri},
                        headers=headers,
                    )
                except httpx.HTTPError as exc:
                    tally.fail(f"upload-{n}", f"upload: {type(exc).__name__}: {exc}")
                    return
                if response.is_error:
                    tally.fail(
                        f"upload-{n}", f"upload answered {response.status_code}: {response.text}"
                    )
                    return
                tally.start(response.json()["jobId"], t0)

        await asyncio.gather(*(one(n) for n in range(tally.expected)))


async def read_jobs(
    sessions: async_sessionmaker[AsyncSession], tally: Tally, ids: list[str]
) -> dict[str, VerificationJob]:
    """Settle jobs from their rows: completed with a ``verified`` result, or not (a completed job
    with another result, a failed job, with its error); note the others' status."""
    async with sessions() as session:
        rows = (
            (await session.execute(select(VerificationJob).where(VerificationJob.id.in_(ids))))
            .scalars()
            .all()
        )
    for row in rows:
        if row.status == "completed":
            verdict = json.loads(row.result or "{}").get("status")
            if verdict == "verified":
                tally.complete(row.id)
            else:
                tally.fail(row.id, f"completed, not verified: {verdict}: {row.result}")
        elif row.status == "failed":
            tally.fail(row.id, f"failed: {row.error}")
        else:
            tally.note(row.id, f"status {row.status} ({row.progress} %)")
    return {row.id: row for row in rows}


async def wait_jobs(settings: Settings, tally: Tally) -> list[VerificationJob]:
    """Until every posted job is settled; the rows of the settled ones."""
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    rows: dict[str, VerificationJob] = {}
    try:
        while True:
            rows.update(await read_jobs(sessions, tally, tally.open()))
            if tally.finished:
                return [r for r in rows.values() if tally.is_settled(r.id)]
            await asyncio.sleep(0.1)
    finally:
        await explain(tally, lambda ids: read_jobs(sessions, tally, ids))
        await engine.dispose()


def report(label: str, rows: list[VerificationJob], elapsed: float) -> None:
    latencies = [
        (r.completed_at - r.created_at).total_seconds() for r in rows if r.completed_at is not None
    ]
    verified = sum(1 for r in rows if r.result and '"status":"verified"' in r.result)
    print(
        f"  {label}: {len(rows) / elapsed:.1f} jobs/s over {elapsed:.1f} s; "
        f"upload -> completed p50 {percentile(latencies, 0.5):.2f} s, "
        f"p99 {percentile(latencies, 0.99):.2f} s; {verified}/{len(rows)} verified",
        flush=True,
    )


async def run(
    stack: BenchStack,
    tallies: list[tuple[str, Tally]],
    concurrency: int,
    size: int,
    profile: str | None = None,
) -> None:
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
    for (label, tally), api_url in zip(tallies, (stack.api_url, None), strict=True):
        tenant = f"bench-{uuid.uuid4().hex[:6]}"
        token = issue_token(settings, subject="bench", tenant=tenant, roles=["user"])
        headers = {"Authorization": f"Bearer {token}"}
        processes = None
        phase_profile = f"{profile}-workflow" if profile else None
        if api_url is None:
            port = free_port()
            env = {**stack.env, "API_PORT": str(port), "TEMPORAL_ADDRESS": "127.0.0.1:9"}
            stack.env, saved = env, stack.env
            try:
                inline = await stack.spawn(sys.executable, "-m", "api", name="api-inline")
            finally:
                stack.env = saved
            api_url = f"http://127.0.0.1:{port}"
            await wait_http(f"{api_url}/health/live")
            processes = {"api": inline}
            phase_profile = f"{profile}-inline" if profile else None
        started = time.perf_counter()
        async with measured(stack, phase_profile, processes) as cpu:
            await post_all(api_url, headers, data, content.manifest_uri, tally, concurrency)
            rows = await wait_jobs(settings, tally)
        report(label, rows, time.perf_counter() - started)
        print(f"  {label}: CPU per job {cpu.per_op(len(rows))}", flush=True)


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--size-mb", type=float, default=1.0)
    parser.add_argument(
        "--deadline-seconds",
        type=float,
        default=DEADLINE_SECONDS,
        help="seconds from the start by which the run ends (default %(default).0f)",
    )
    parser.add_argument(
        "--profile",
        metavar="NAME",
        help="py-spy flame graphs of each phase's processes, to "
        "bench/profiles/NAME-{workflow,inline}-{worker,api}.svg",
    )
    args = parser.parse_args()
    size = int(args.size_mb * 1024 * 1024)
    print(
        f"reproduce: .venv/bin/python -m bench.verification --jobs {args.jobs} "
        f"--concurrency {args.concurrency} --size-mb {args.size_mb:g}"
        + (f" --profile {args.profile}" if args.profile else ""),
        flush=True,
    )
    print(
        f"Verification of a {size:,} byte file, {args.jobs} jobs, {args.concurrency} at a time, "
        f"{os.cpu_count()} cores",
        flush=True,
    )
    deadline = Deadline(args.deadline_seconds)
    tallies = [
        ("workflow (async)", Tally("jobs through the workflow", args.jobs)),
        ("inline, Temporal down", Tally("jobs inline", args.jobs)),
    ]
    async with bench_stack(None, 0.2) as stack, deadline.bound():
        await run(stack, tallies, args.concurrency, size, args.profile)
    return finish([tally for _, tally in tallies], deadline)


if __name__ == "__main__":
    run_main(main)
