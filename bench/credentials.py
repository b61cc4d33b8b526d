"""Benchmark: credentials anchored per second and gas per credential, one per transaction vs
Merkle batches, against the dev stack (anvil with 2 s blocks, the wallet writer, the API).

    .venv/bin/python -m bench.credentials [--single 50] [--batches 100,1000]

Single: ``--single`` credentials posted at once through ``POST .../anchor`` (each its own
``anchor`` transaction; the credentials queue runs 10 at a time under a 10/s server-side limit).
Batched: for each N, N credentials through ``POST /api/v1/credentials/anchor/batch`` with the
batch size set to N (one ``anchorRoot`` transaction). Gas is read from the mined receipts.
Settle's database is an embedded PostgreSQL of each stack's own.

The run ends by ``--deadline-seconds`` whatever happens. Anchors that fail are counted with their
rows' errors, and the exit status is 1 unless every credential was confirmed (see
``bench/outcomes.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

import httpx
from eth_utils import keccak
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.auth import issue_token
from bench.outcomes import Deadline, Tally, explain, finish, run_main
from bench.stack import BenchStack, bench_stack
from domain.credentials import credential_key
from operations.credential_anchors import workflow_id_for
from providers.evm import EvmClient
from runtime.settings import Settings
from store.db import make_engine, make_session_factory
from store.models import CredentialAnchorRecord

#: the default configuration starts three stacks (single, batches of 100 and 1,000), each about
#: a minute before its first request
DEADLINE_SECONDS = 900.0
CID = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"


def digest() -> str:
    return "0x" + keccak(text=str(uuid.uuid4())).hex()


async def read_anchors(
    sessions: async_sessionmaker[AsyncSession], tenant: str, tally: Tally, ids: list[str]
) -> None:
    """Settle credentials from their rows: confirmed, or failed with the row's error."""
    async with sessions() as session:
        rows = await session.execute(
            select(
                CredentialAnchorRecord.credential_id,
                CredentialAnchorRecord.status,
                CredentialAnchorRecord.error,
                CredentialAnchorRecord.tx_hash,
            ).where(
                CredentialAnchorRecord.tenant == tenant,
                CredentialAnchorRecord.credential_id.in_(ids),
            )
        )
    for credential_id, status, error, tx_hash in rows:
        if status == "confirmed":
            tally.complete(credential_id)
        elif status == "failed":
            tally.fail(credential_id, error or "failed")
        else:
            tally.note(credential_id, f"status {status}, tx {tx_hash or 'not sent'}")


async def wait_confirmed(settings: Settings, tenant: str, tally: Tally) -> list[str]:
    """Until every anchored credential is settled; the transactions of the confirmed ones."""
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    try:
        while not tally.finished:
            await read_anchors(sessions, tenant, tally, tally.open())
            await asyncio.sleep(0.1)
        async with sessions() as session:
            rows = await session.execute(
                select(CredentialAnchorRecord.tx_hash).where(
                    CredentialAnchorRecord.tenant == tenant,
                    CredentialAnchorRecord.status == "confirmed",
                )
            )
            return sorted({h for (h,) in rows if h})
    finally:
        await explain(tally, lambda ids: read_anchors(sessions, tenant, tally, ids))
        await engine.dispose()


async def gas_of(stack: BenchStack, hashes: list[str]) -> int:
    client = EvmClient(stack.anvil_url, chain_id=31337)
    try:
        total = 0
        for tx_hash in hashes:
            receipt = await client.receipt(tx_hash)
            assert receipt is not None
            total += int(receipt["gasUsed"], 16)
        return total
    finally:
        await client.aclose()


async def run(stack: BenchStack, tally: Tally, batch: bool) -> tuple[float, float]:
    """Anchor ``tally.expected`` credentials, one transaction each or as one batch; anchors per
    second from the request to every row confirmed, and gas per confirmed credential."""
    settings = Settings(_env_file=None, database_url=stack.env["DATABASE_URL"])
    tenant = f"bench-{uuid.uuid4().hex[:6]}"
    headers = {
        "Authorization": f"Bearer {issue_token(settings, subject='b', tenant=tenant, roles=['user'])}"
    }
    count = tally.expected
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=120) as http:
        if batch:
            items = [
                {"credential_id": f"c-{i}", "data_hash": digest(), "ipfs_cid": CID}
                for i in range(count)
            ]
            response = await http.post(
                "/api/v1/credentials/anchor/batch", json={"items": items}, headers=headers
            )
            for item in items:
                if response.is_error:
                    reason = f"batch answered {response.status_code}: {response.text}"
                    tally.fail(item["credential_id"], reason)
                else:
                    tally.start(item["credential_id"], started)
        else:
            gate = asyncio.Semaphore(20)

            async def one(i: int) -> None:
                async with gate:
                    response = await http.post(
                        f"/api/v1/credentials/c-{i}/anchor",
                        json={"data_hash": digest(), "ipfs_cid": CID, "batch": False},
                        headers=headers,
                    )
                    if response.is_error:
                        tally.fail(
                            f"c-{i}", f"anchor answered {response.status_code}: {response.text}"
                        )
                    else:
                        tally.start(f"c-{i}", started)

            await asyncio.gather(*(one(i) for i in range(count)))
    hashes = await wait_confirmed(settings, tenant, tally)
    elapsed = time.perf_counter() - started
    if not batch:
        print(f"  {await submit_timeline(stack, tenant, list(tally.completed))}", flush=True)
    confirmed = len(tally.completed)
    if not confirmed:
        return 0.0, float("nan")
    return confirmed / elapsed, await gas_of(stack, hashes) / confirmed


async def submit_timeline(stack: BenchStack, tenant: str, ids: list[str]) -> str:
    """Where a single anchor's time goes, read from the workflows' histories: how fast the
    ``submit_anchor`` activities started, how long each waited for its turn (scheduled ->
    started: the queue's rate limit and concurrency) and ran (started -> closed)."""
    client = await stack.temporal()
    waits: list[float] = []
    runs: list[float] = []
    starts: list[float] = []
    for credential_id in ids:
        handle = client.get_workflow_handle(workflow_id_for(credential_key(tenant, credential_id)))
        history = await handle.fetch_history()
        scheduled: dict[int, float] = {}
        started: dict[int, float] = {}
        for event in history.events:
            at = event.event_time.ToDatetime().timestamp()
            if event.HasField("activity_task_scheduled_event_attributes"):
                attrs = event.activity_task_scheduled_event_attributes
                if attrs.activity_type.name == "credentials.submit_anchor":
                    scheduled[event.event_id] = at
            elif event.HasField("activity_task_started_event_attributes"):
                sched = event.activity_task_started_event_attributes.scheduled_event_id
                if sched in scheduled:
                    started[sched] = at
                    waits.append(at - scheduled[sched])
                    starts.append(at)
            elif event.HasField("activity_task_completed_event_attributes"):
                sched = event.activity_task_completed_event_attributes.scheduled_event_id
                if sched in started:
                    runs.append(at - started[sched])
    if len(starts) < 2:
        return "no submissions in the histories"
    starts.sort()
    rate = (len(starts) - 1) / (starts[-1] - starts[0])

    def p(values: list[float], q: float) -> float:
        return sorted(values)[min(len(values) - 1, int(q * len(values)))] if values else 0.0

    return (
        f"submissions started {rate:.1f}/s; scheduled -> started p50 {p(waits, 0.5):.2f} s, "
        f"p90 {p(waits, 0.9):.2f} s; started -> completed p50 {p(runs, 0.5):.2f} s, "
        f"p90 {p(runs, 0.9):.2f} s"
    )


def sustained(tally: Tally) -> float:
    """Confirmations per second between the first and the last one: the steady rate, without
    the fixed wait for the first anchor's block and confirmations."""
    times = sorted(tally.completed.values())
    if len(times) < 2 or times[-1] <= times[0]:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0])


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--single", type=int, default=50)
    parser.add_argument("--batches", default="100,1000")
    parser.add_argument(
        "--deadline-seconds",
        type=float,
        default=DEADLINE_SECONDS,
        help="seconds from the start by which the run ends (default %(default).0f)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting for the stacks, e.g. CREDENTIAL_ANCHOR_CONCURRENCY=10 (repeatable)",
    )
    args = parser.parse_args()
    env = dict(e.split("=", 1) for e in args.env)
    sizes = [int(n) for n in args.batches.split(",") if n.strip()]
    print(
        f"reproduce: .venv/bin/python -m bench.credentials --single {args.single} "
        f"--batches {args.batches}" + "".join(f" --env {e}" for e in args.env),
        flush=True,
    )
    print(f"Credential anchoring, anvil with 2 s blocks, {os.cpu_count()} cores", flush=True)
    deadline = Deadline(args.deadline_seconds)
    single = Tally("one per transaction", args.single)
    batches = [Tally(f"batch of {size}", size) for size in sizes]
    async with bench_stack(None, 0.2, extra_env=env) as stack, deadline.bound():
        rate, gas = await run(stack, single, batch=False)
        print(
            f"  one per transaction, {args.single}: {rate:.1f} anchors/s, {gas:,.0f} gas each; "
            f"sustained {sustained(single):.1f}/s (first to last confirmation)",
            flush=True,
        )
    for size, tally in zip(sizes, batches, strict=True):
        if deadline.expired:
            break
        extra = {
            **env,
            "CREDENTIAL_ANCHOR_BATCH_SIZE": str(size),
            "CREDENTIAL_ANCHOR_BATCH_WAIT_SECONDS": "30",
        }
        async with bench_stack(None, 0.2, extra_env=extra) as stack, deadline.bound():
            rate, gas = await run(stack, tally, batch=True)
            print(f"  batch of {size}: {rate:.1f} anchors/s, {gas:,.0f} gas each", flush=True)
    return finish([single, *batches], deadline)


if __name__ == "__main__":
    run_main(main)
