"""Benchmark: ticket purchases end to end against the sandboxes, and raw Temporal throughput for a
workflow with the same number of activities, in the same run.

    .venv/bin/python -m bench.tickets [--purchases 100] [--concurrency 20]

Every component runs in its own process as under ``make run``: the Temporal dev server (its own
SQLite file, WAL), Settle's database on an embedded PostgreSQL, the sandboxes (Stripe REST subset
sending signed webhooks to the API, Solana JSON-RPC over LiteSVM, SMTP catcher), worker, API. This
process posts purchases through the API, with a venue webhook endpoint registered (a receiver in
this process), and watches the database for the moment the SMTP catcher accepted the "NFT minted"
email: request -> email received. The activity count of one purchase is read from its workflow
history, and ``BenchNoop`` runs with that many no-op activities.

The run ends by ``--deadline-seconds`` whatever happens. Purchases that fail (payment failed,
refunded, the email given up) or park (read from the workflow, the row does not say it) are
counted with their reasons, and the exit status is 1 unless every purchase emailed its buyer and
the venue received every webhook (see ``bench/outcomes.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response
from solders.keypair import Keypair
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.auth import issue_token
from bench.mpesa_deposits import percentile, run_raw
from bench.outcomes import Deadline, Tally, explain, finish, run_main
from bench.stack import (
    BenchStack,
    Measured,
    activity_count,
    bench_stack,
    measured,
    read_workflows,
)
from domain.tickets import PurchaseStatus
from runtime.settings import Settings
from sandbox.serve import serve
from store.db import make_engine, make_session_factory
from store.models import Notification, TicketPurchase

#: the default configuration (100 at 20 after a warm-up of 10, then the raw run) takes a couple
#: of minutes on 2 cores
DEADLINE_SECONDS = 600.0
#: with nothing settled for this long, ask Temporal whether the open purchases parked
STALL_SECONDS = 5.0
#: how long the venue's last webhooks may follow the last emails
WEBHOOK_WAIT_SECONDS = 10.0
FAILED = {PurchaseStatus.PAYMENT_FAILED, PurchaseStatus.REFUNDED}
#: the Stripe sandbox's test cards (sandbox/stripe.py): this one succeeds
PAYMENT_METHOD = "pm_card_visa"


async def create_event(http: httpx.AsyncClient, venue: dict[str, str], places: int) -> str:
    """The event the purchases are for, created by the venue in the tenant's catalogue: one
    section ``FLOOR`` with a place per purchase (the catalogue sets the price)."""
    created = await http.post(
        "/api/v1/events",
        json={
            "name": "Bench night",
            "venue": "Bench hall",
            "starts_at": (datetime.now(UTC) + timedelta(days=7)).isoformat(),
            "currency": "usd",
            "sections": [{"code": "FLOOR", "price": 2500, "capacity": max(1, places)}],
        },
        headers=venue,
    )
    created.raise_for_status()
    return str(created.json()["id"])


def purchase_request(event: str, n: int, payment_method: str = PAYMENT_METHOD) -> dict[str, Any]:
    """The body of the ``n``-th purchase: a place in section ``FLOOR`` of ``event`` paid by a
    test card (price and currency are the catalogue's)."""
    return {
        "event_id": event,
        "section": "FLOOR",
        "payment_method": payment_method,
        "buyer_email": f"buyer{n}@bench.example",
        "buyer_wallet": str(Keypair().pubkey()),
    }


def email_id(purchase_id: str) -> str:
    return f"{purchase_id}:minted-email"


async def read_purchases(
    sessions: async_sessionmaker[AsyncSession], tally: Tally, ids: list[str]
) -> None:
    """Settle purchases from the database: the minted email sent (completed) or given up, the
    purchase's row failed (payment failed, refunded); note what the others are doing."""
    async with sessions() as session:
        emails = (
            await session.execute(
                select(Notification.id, Notification.status, Notification.error).where(
                    Notification.id.in_([email_id(i) for i in ids])
                )
            )
        ).all()
        purchases = (
            await session.execute(
                select(
                    TicketPurchase.id, TicketPurchase.status, TicketPurchase.failure_reason
                ).where(TicketPurchase.id.in_(ids))
            )
        ).all()
    now = time.perf_counter()
    for purchase_id, status, reason in purchases:
        if status in FAILED:
            tally.fail(purchase_id, f"{status}: {reason or ''}")
        elif status == PurchaseStatus.NEEDS_ATTENTION:
            tally.park(purchase_id, reason or "")
        else:
            tally.note(purchase_id, f"status {status}")
    for message_id, status, error in emails:
        purchase_id = message_id.removesuffix(":minted-email")
        if status == "sent":
            tally.complete(purchase_id, now)
        elif status == "failed":
            tally.fail(purchase_id, f"minted email given up: {error or ''}")


async def run_purchases(
    stack: BenchStack,
    tally: Tally,
    concurrency: int,
    webhook_url: str,
    figures: dict[str, Any],
    payment_method: str = PAYMENT_METHOD,
) -> None:
    """``tally.expected`` purchases through the API, ``concurrency`` in flight, each until its
    minted email is sent or it failed or parked. Fills ``figures`` once all are settled."""
    settings = Settings(_env_file=None, database_url=stack.env["DATABASE_URL"])
    tenant = f"bench-{uuid.uuid4().hex[:6]}"
    buyer = {
        "Authorization": f"Bearer {issue_token(settings, subject='buyer', tenant=tenant, roles=['user'])}"
    }
    venue = {
        "Authorization": f"Bearer {issue_token(settings, subject='venue', tenant=tenant, roles=['venue_admin'])}"
    }
    request_latency: list[float] = []
    workflow_ids: dict[str, str] = {}
    gate = asyncio.Semaphore(concurrency)
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)

    async def one(http: httpx.AsyncClient, event: str, n: int) -> None:
        async with gate:
            t0 = time.perf_counter()
            try:
                response = await http.post(
                    "/api/v1/tickets/purchase",
                    json=purchase_request(event, n, payment_method),
                    headers=buyer,
                )
            except httpx.HTTPError as exc:
                tally.fail(f"request-{n}", f"purchase: {type(exc).__name__}: {exc}")
                return
            if response.is_error:
                tally.fail(
                    f"request-{n}", f"purchase answered {response.status_code}: {response.text}"
                )
                return
            request_latency.append(time.perf_counter() - t0)
            accepted = response.json()
            tally.start(accepted["id"], t0)
            workflow_ids[accepted["id"]] = accepted["workflow_id"]
            # hold the slot: `concurrency` in flight (a watcher that died is raised below)
            while not tally.is_settled(accepted["id"]) and not watcher.done():
                await asyncio.sleep(0.02)

    async def watch() -> None:
        settled, since = tally.settled, time.perf_counter()
        while not tally.finished:
            if pending := tally.open():
                await read_purchases(sessions, tally, pending)
            if tally.settled != settled:
                settled, since = tally.settled, time.perf_counter()
            elif pending and time.perf_counter() - since > STALL_SECONDS:
                # nothing moved for a while: a parked purchase shows only in its workflow
                await read_workflows(stack, tally, workflow_ids)
                since = time.perf_counter()
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch())
    try:
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=60) as http:
            registered = await http.post(
                "/api/v1/webhook-endpoints", json={"url": webhook_url}, headers=venue
            )
            registered.raise_for_status()
            event = await create_event(http, venue, tally.expected)
            t_start = time.perf_counter()
            await asyncio.gather(*(one(http, event, n) for n in range(tally.expected)))
            await watcher
        elapsed = time.perf_counter() - t_start
        to_email = tally.durations()
        figures.update(
            {
                "per_second": len(to_email) / elapsed,
                "email_p50": percentile(to_email, 0.5),
                "email_p99": percentile(to_email, 0.99),
                "request_p50": percentile(request_latency, 0.5),
                "request_p99": percentile(request_latency, 0.99),
            }
        )
        if tally.completed:
            figures["workflow_id"] = workflow_ids[next(iter(tally.completed))]
    finally:
        watcher.cancel()

        async def read(ids: list[str]) -> None:
            await read_workflows(stack, tally, workflow_ids)  # parked shows only there
            await read_purchases(sessions, tally, tally.open())  # the row's status says more

        await explain(tally, read)
        await engine.dispose()


async def await_webhooks(tally: Tally, purchases: Tally, deliveries: list[str]) -> None:
    """Each emailed purchase's venue webhook (``webhook-id`` is ``<purchase id>:purchased:<endpoint
    id>``); they follow the emails by a moment."""
    for purchase_id in purchases.started:
        tally.start(purchase_id)
    waited = time.perf_counter()
    while True:
        received = {d.split(":")[0] for d in deliveries}
        for purchase_id in tally.open():
            if purchase_id in received:
                tally.complete(purchase_id)
        if not tally.open() or time.perf_counter() - waited > WEBHOOK_WAIT_SECONDS:
            break
        await asyncio.sleep(0.1)
    for purchase_id in tally.open():
        tally.note(purchase_id, "no webhook received")


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--purchases", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument(
        "--payment-method",
        default=PAYMENT_METHOD,
        help="a Stripe sandbox test card (sandbox/stripe.py); default: one that succeeds",
    )
    parser.add_argument(
        "--deadline-seconds",
        type=float,
        default=DEADLINE_SECONDS,
        help="seconds from the start by which the run ends (default %(default).0f)",
    )
    parser.add_argument(
        "--profile",
        metavar="NAME",
        help="py-spy flame graphs of the worker and the API over the measured purchases, "
        "to bench/profiles/NAME-worker.svg and NAME-api.svg",
    )
    args = parser.parse_args()
    command = (
        f".venv/bin/python -m bench.tickets --purchases {args.purchases} "
        f"--concurrency {args.concurrency}"
    )
    if args.payment_method != PAYMENT_METHOD:
        command += f" --payment-method {args.payment_method}"
    if args.profile:
        command += f" --profile {args.profile}"
    print(f"reproduce: {command}", flush=True)
    deadline = Deadline(args.deadline_seconds)
    warm_up = Tally("warm-up purchases", min(10, args.purchases))
    purchases = Tally("purchases", args.purchases)
    webhooks = Tally("venue webhooks", args.purchases)
    raw_tally = Tally("raw BenchNoop workflows", args.purchases)
    tickets: dict[str, Any] = {}
    raw: dict[str, float] = {}
    activities = 0
    cpu = Measured()

    deliveries: list[str] = []  # webhook-id of each delivery (a retry repeats its id)
    receiver = FastAPI()

    @receiver.post("/hook")
    async def hook(request: Request) -> Response:
        await request.body()
        deliveries.append(request.headers.get("webhook-id", ""))
        return Response(status_code=204)

    venue_server = await serve(receiver)
    hook_url = f"{venue_server.url}/hook"
    # the venue's receiver is on loopback: allow-list it, as a local venue would have to
    extra = {"WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]'}
    try:
        async with bench_stack(None, 0.2, extra_env=extra) as stack, deadline.bound():
            warm: dict[str, Any] = {}
            await run_purchases(stack, warm_up, 5, hook_url, warm, args.payment_method)
            if "workflow_id" in warm:
                activities = await activity_count(stack, str(warm["workflow_id"]))
                print(f"one purchase runs {activities} activities (from its history)", flush=True)
            deliveries.clear()
            async with measured(stack, args.profile) as cpu:
                await run_purchases(
                    stack, purchases, args.concurrency, hook_url, tickets, args.payment_method
                )
            await await_webhooks(webhooks, purchases, deliveries)
            if activities:
                await run_raw(stack, raw_tally, args.concurrency, activities, raw)
    finally:
        await venue_server.stop()

    def ms(value: float | str) -> str:
        return f"{float(value) * 1000:.0f} ms"

    ours = {d for d in deliveries if d.split(":")[0] in purchases.started}
    lines = [
        f"Ticket purchases, {args.purchases} at concurrency {args.concurrency}, embedded "
        "PostgreSQL, Stripe/Solana/SMTP sandboxes, one venue webhook endpoint",
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}",
    ]
    if tickets:
        lines += [
            f"  purchases/s (request -> email)     {float(tickets['per_second']):.1f}",
            f"  request -> email p50 / p99         {ms(tickets['email_p50'])} / {ms(tickets['email_p99'])}",
            f"  purchase call p50 / p99            {ms(tickets['request_p50'])} / {ms(tickets['request_p99'])}",
            f"  CPU per purchase                   {cpu.per_op(len(purchases.completed))}",
            f"  venue webhooks received            {len(ours)} distinct of "
            f"{args.purchases} ({sum(d in ours for d in deliveries)} deliveries)",
        ]
    if raw:
        lines += [
            f"raw Temporal, BenchNoop with {activities} no-op activities, same server, same concurrency",
            f"  workflows/s                        {raw['per_second']:.1f}",
            f"  start -> result p50 / p99          {ms(raw['p50'])} / {ms(raw['p99'])}",
        ]
    if tickets and raw:
        lines.append(
            f"ratio purchases/s : raw workflows/s  {float(tickets['per_second']) / raw['per_second']:.2f}"
        )
    lines.append(f"reproduce: {command}")
    print("\n" + "\n".join(lines) + "\n")
    return finish([warm_up, purchases, webhooks, raw_tally], deadline)


if __name__ == "__main__":
    run_main(main)
