"""Benchmark: credentials anchored per second and gas per credential, one per transaction vs
Merkle batches, against the dev stack (anvil with 2 s blocks, the wallet writer, the API).

    .venv/bin/python -m bench.credentials [--single 50] [--batches 100,1000]

Single: ``--single`` credentials posted at once through ``POST .../anchor`` (each its own
``anchor`` transaction; the credentials queue runs 5 at a time under a 10/s server-side limit).
Batched: for each N, N credentials through ``POST /api/v1/credentials/anchor/batch`` with the
batch size set to N (one ``anchorRoot`` transaction). Gas is read from the mined receipts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid

import httpx
from eth_utils import keccak
from sqlalchemy import func, select

from api.auth import issue_token
from bench.stack import BenchStack, bench_stack
from providers.evm import EvmClient
from runtime.settings import Settings
from store.db import make_engine, make_session_factory
from store.models import CredentialAnchorRecord

CID = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"


def digest() -> str:
    return "0x" + keccak(text=str(uuid.uuid4())).hex()


async def wait_confirmed(settings: Settings, tenant: str, count: int) -> list[str]:
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    try:
        while True:
            async with sessions() as session:
                done = (
                    await session.execute(
                        select(func.count())
                        .select_from(CredentialAnchorRecord)
                        .where(
                            CredentialAnchorRecord.tenant == tenant,
                            CredentialAnchorRecord.status == "confirmed",
                        )
                    )
                ).scalar_one()
                if done >= count:
                    rows = await session.execute(
                        select(CredentialAnchorRecord.tx_hash).where(
                            CredentialAnchorRecord.tenant == tenant
                        )
                    )
                    return sorted({h for (h,) in rows if h})
            await asyncio.sleep(0.1)
    finally:
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


async def run(stack: BenchStack, count: int, batch: bool) -> tuple[float, float]:
    settings = Settings(_env_file=None, database_url=stack.env["DATABASE_URL"])
    tenant = f"bench-{uuid.uuid4().hex[:6]}"
    headers = {
        "Authorization": f"Bearer {issue_token(settings, subject='b', tenant=tenant, roles=['user'])}"
    }
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=120) as http:
        if batch:
            items = [
                {"credential_id": f"c-{i}", "data_hash": digest(), "ipfs_cid": CID}
                for i in range(count)
            ]
            (
                await http.post(
                    "/api/v1/credentials/anchor/batch", json={"items": items}, headers=headers
                )
            ).raise_for_status()
        else:
            gate = asyncio.Semaphore(20)

            async def one(i: int) -> None:
                async with gate:
                    response = await http.post(
                        f"/api/v1/credentials/c-{i}/anchor",
                        json={"data_hash": digest(), "ipfs_cid": CID, "batch": False},
                        headers=headers,
                    )
                    response.raise_for_status()

            await asyncio.gather(*(one(i) for i in range(count)))
    hashes = await wait_confirmed(settings, tenant, count)
    elapsed = time.perf_counter() - started
    return count / elapsed, await gas_of(stack, hashes) / count


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--single", type=int, default=50)
    parser.add_argument("--batches", default="100,1000")
    args = parser.parse_args()
    sizes = [int(n) for n in args.batches.split(",")]
    print(
        f"reproduce: .venv/bin/python -m bench.credentials --single {args.single} "
        f"--batches {args.batches}",
        flush=True,
    )
    print(f"Credential anchoring, anvil with 2 s blocks, {os.cpu_count()} cores", flush=True)
    async with bench_stack(None, 0.2) as stack:
        rate, gas = await run(stack, args.single, batch=False)
        print(
            f"  one per transaction, {args.single}: {rate:.1f} anchors/s, {gas:,.0f} gas each",
            flush=True,
        )
    for size in sizes:
        extra = {
            "CREDENTIAL_ANCHOR_BATCH_SIZE": str(size),
            "CREDENTIAL_ANCHOR_BATCH_WAIT_SECONDS": "30",
        }
        async with bench_stack(None, 0.2, extra_env=extra) as stack:
            rate, gas = await run(stack, size, batch=True)
            print(f"  batch of {size}: {rate:.1f} anchors/s, {gas:,.0f} gas each", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
    sys.stdout.flush()
    os._exit(0)
