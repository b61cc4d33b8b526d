"""Benchmark: ticket purchases end to end against the sandboxes, and raw Temporal throughput for a
workflow with the same number of activities, in the same run.

    .venv/bin/python -m bench.tickets [--purchases 100] [--concurrency 20]

Every component runs in its own process as under ``make run``: dev server (SQLite file, WAL), the
sandboxes (Stripe REST subset sending signed webhooks to the API, Solana JSON-RPC over LiteSVM,
SMTP catcher), worker, API. This process posts purchases through the API, with a venue webhook
endpoint registered (a receiver in this process), and watches the database for the moment the SMTP
catcher accepted the "NFT minted" email: request -> email received. The activity count of one
purchase is read from its workflow history, and ``BenchNoop`` runs with that many no-op activities.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response
from solders.keypair import Keypair
from sqlalchemy import select

from api.auth import issue_token
from bench.mpesa_deposits import percentile, run_raw
from bench.stack import BenchStack, activity_count, bench_stack
from runtime.settings import Settings
from sandbox.serve import serve
from store.db import make_engine, make_session_factory
from store.models import Notification


async def run_purchases(
    stack: BenchStack, count: int, concurrency: int, webhook_url: str
) -> dict[str, Any]:
    settings = Settings(_env_file=None, database_url=stack.env["DATABASE_URL"])
    tenant = f"bench-{uuid.uuid4().hex[:6]}"
    buyer = {
        "Authorization": f"Bearer {issue_token(settings, subject='buyer', tenant=tenant, roles=['user'])}"
    }
    venue = {
        "Authorization": f"Bearer {issue_token(settings, subject='venue', tenant=tenant, roles=['venue_admin'])}"
    }
    started: dict[str, float] = {}
    emailed: dict[str, float] = {}
    request_latency: list[float] = []
    workflow_ids: list[str] = []
    gate = asyncio.Semaphore(concurrency)
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)

    async def one(http: httpx.AsyncClient, n: int) -> None:
        async with gate:
            t0 = time.perf_counter()
            response = await http.post(
                "/api/v1/tickets/purchase",
                json={
                    "event_id": event,
                    "section": "FLOOR",
                    "payment_method": "pm_card_visa",
                    "buyer_email": f"buyer{n}@bench.example",
                    "buyer_wallet": str(Keypair().pubkey()),
                },
                headers=buyer,
            )
            response.raise_for_status()
            request_latency.append(time.perf_counter() - t0)
            accepted = response.json()
            started[accepted["id"]] = t0
            workflow_ids.append(accepted["workflow_id"])
            while accepted["id"] not in emailed:  # hold the slot: `concurrency` in flight
                await asyncio.sleep(0.02)

    async def watch() -> None:
        while len(emailed) < count:
            pending = {f"{i}:minted-email": i for i in started if i not in emailed}
            if pending:
                async with sessions() as session:
                    rows = await session.execute(
                        select(Notification.id).where(
                            Notification.id.in_(pending), Notification.status == "sent"
                        )
                    )
                now = time.perf_counter()
                for (message_id,) in rows:
                    emailed[pending[message_id]] = now
            await asyncio.sleep(0.02)

    async with httpx.AsyncClient(base_url=stack.api_url, timeout=60) as http:
        registered = await http.post(
            "/api/v1/webhook-endpoints", json={"url": webhook_url}, headers=venue
        )
        registered.raise_for_status()
        created = await http.post(
            "/api/v1/events",
            json={
                "name": "Bench night",
                "venue": "Bench hall",
                "starts_at": (datetime.now(UTC) + timedelta(days=7)).isoformat(),
                "currency": "usd",
                "sections": [{"code": "FLOOR", "price": 2500, "capacity": count}],
            },
            headers=venue,
        )
        created.raise_for_status()
        event = created.json()["id"]
        t_start = time.perf_counter()
        watcher = asyncio.create_task(watch())
        await asyncio.gather(*(one(http, n) for n in range(count)))
        await watcher
    elapsed = time.perf_counter() - t_start
    await engine.dispose()
    to_email = [emailed[i] - started[i] for i in started]
    return {
        "per_second": count / elapsed,
        "email_p50": percentile(to_email, 0.5),
        "email_p99": percentile(to_email, 0.99),
        "request_p50": percentile(request_latency, 0.5),
        "request_p99": percentile(request_latency, 0.99),
        "workflow_id": workflow_ids[0],
        "ids": set(started),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--purchases", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    command = (
        f".venv/bin/python -m bench.tickets --purchases {args.purchases} "
        f"--concurrency {args.concurrency}"
    )
    print(f"reproduce: {command}", flush=True)

    deliveries: list[str] = []  # webhook-id of each delivery (a retry repeats its id)
    receiver = FastAPI()

    @receiver.post("/hook")
    async def hook(request: Request) -> Response:
        await request.body()
        deliveries.append(request.headers.get("webhook-id", ""))
        return Response(status_code=204)

    venue_server = await serve(receiver)
    # the venue's receiver is on loopback: allow-list it, as a local venue would have to
    extra = {"WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]'}
    try:
        async with bench_stack(None, 0.2, extra_env=extra) as stack:
            warm = await run_purchases(
                stack, min(10, args.purchases), 5, f"{venue_server.url}/hook"
            )
            activities = await activity_count(stack, str(warm["workflow_id"]))
            print(f"one purchase runs {activities} activities (from its history)", flush=True)
            deliveries.clear()
            tickets = await run_purchases(
                stack, args.purchases, args.concurrency, f"{venue_server.url}/hook"
            )
            raw = await run_raw(stack, args.purchases, args.concurrency, activities)
            await asyncio.sleep(2)  # the last purchases' webhooks follow their emails
    finally:
        await venue_server.stop()

    # webhook-id is "<purchase id>:purchased:<endpoint id>"; the warm-up's may still arrive
    ours = {d for d in deliveries if d.split(":")[0] in tickets["ids"]}

    def ms(value: float | str) -> str:
        return f"{float(value) * 1000:.0f} ms"

    lines = [
        f"Ticket purchases, {args.purchases} at concurrency {args.concurrency}, SQLite (WAL), "
        "Stripe/Solana/SMTP sandboxes, one venue webhook endpoint",
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}",
        f"  purchases/s (request -> email)     {float(tickets['per_second']):.1f}",
        f"  request -> email p50 / p99         {ms(tickets['email_p50'])} / {ms(tickets['email_p99'])}",
        f"  purchase call p50 / p99            {ms(tickets['request_p50'])} / {ms(tickets['request_p99'])}",
        f"  venue webhooks received            {len(ours)} distinct of "
        f"{args.purchases} ({sum(d in ours for d in deliveries)} deliveries)",
        f"raw Temporal, BenchNoop with {activities} no-op activities, same server, same concurrency",
        f"  workflows/s                        {raw['per_second']:.1f}",
        f"  start -> result p50 / p99          {ms(raw['p50'])} / {ms(raw['p99'])}",
        f"ratio purchases/s : raw workflows/s  {float(tickets['per_second']) / raw['per_second']:.2f}",
        f"reproduce: {command}",
    ]
    print("\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
    sys.stdout.flush()
    os._exit(0)
