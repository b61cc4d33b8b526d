"""Benchmark: how long the API takes to accept an operation, under open-loop load.

    .venv/bin/python -m bench.accept_latency [--rates 20,50] [--seconds 60]

Open loop: requests leave at a fixed rate whatever the earlier ones are doing (the n-th at
``n / rate`` seconds), so a slow answer does not slow the arrivals down as it would in a closed
loop of N clients, and a queue that builds up shows in the latency. For each rate and each
endpoint in turn, for ``--seconds``:

* ``POST /api/v1/deposit/initiate`` (an M-Pesa deposit: row, workflow start)
* ``POST /api/v1/tickets/purchase`` (a place held in the event's section, workflow start)
* ``POST /api/v1/credentials/{id}/anchor`` (a credential's anchor: row, workflow start)

measured from the request leaving to its answer: p50 / p99 / max, and how many answered with
an error (the run exits 1 if any did). The stack is the dev stack as separate processes on its
embedded defaults (``bench/stack.py``), worker included: the operations accepted run behind the
load as they would in production and share the machine's cores with the API. The backlog of one
phase still runs during the next ones (phases go in the order above, the lower rate first).

``--pause-worker`` stops the worker process (SIGSTOP) for the phases, and lets it go on after
them: the workflows are started and wait, so the figures are the API's own (with Temporal and
PostgreSQL), without the backlog's work on the same cores.

The run ends by ``--deadline-seconds`` whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from eth_utils import keccak

from api.auth import issue_token
from bench.mpesa_deposits import PHONE, percentile
from bench.outcomes import Deadline, Tally, finish, run_main
from bench.stack import BenchStack, Measured, bench_stack, measured
from bench.tickets import create_event, purchase_request
from runtime.banner import DEMO_WALLET
from runtime.settings import Settings

#: starting a stack, then 2 rates x 3 endpoints x 60 s with a pause between phases
DEADLINE_SECONDS = 900.0
#: between phases, so one phase's last answers do not overlap the next one's first requests
PAUSE_SECONDS = 5.0
#: an answer slower than this counts as an error (the client gives up)
TIMEOUT_SECONDS = 30.0
CID = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
ENDPOINTS = ("deposit", "purchase", "anchor")

Request = tuple[str, dict[str, Any], dict[str, str]]


def requests_for(
    settings: Settings, event: str, venue_tenant: str
) -> dict[str, Callable[[int], Request]]:
    """For each endpoint, the ``n``-th request: path, body and headers (a fresh tenant per
    endpoint, so no quota or abuse counter of one phase weighs on the next)."""

    def auth(tenant: str, role: str = "user") -> dict[str, str]:
        token = issue_token(settings, subject="bench", tenant=tenant, roles=[role])
        return {"Authorization": f"Bearer {token}"}

    depositor = auth(f"bench-{uuid.uuid4().hex[:6]}")
    buyer = auth(venue_tenant)
    anchorer = auth(f"bench-{uuid.uuid4().hex[:6]}")
    run = uuid.uuid4().hex[:6]
    return {
        "deposit": lambda n: (
            "/api/v1/deposit/initiate",
            {"phone": PHONE, "amount": 100, "wallet_address": DEMO_WALLET},
            depositor,
        ),
        "purchase": lambda n: ("/api/v1/tickets/purchase", purchase_request(event, n), buyer),
        "anchor": lambda n: (
            f"/api/v1/credentials/c-{run}-{n}/anchor",
            {"data_hash": "0x" + keccak(text=f"{run}-{n}").hex(), "ipfs_cid": CID},
            anchorer,
        ),
    }


async def open_loop(
    http: httpx.AsyncClient,
    make: Callable[[int], Request],
    rate: float,
    seconds: float,
    tally: Tally,
) -> list[float]:
    """Send ``rate * seconds`` requests at a fixed rate; each answer's latency in seconds."""
    latencies: list[float] = []
    count = round(rate * seconds)
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def one(n: int) -> None:
        path, body, headers = make(n)
        op = f"{path.split('/')[3]}-{n}"
        t0 = time.perf_counter()
        tally.start(op, t0)
        try:
            response = await http.post(path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            tally.fail(op, f"{type(exc).__name__}: {exc}")
            return
        latencies.append(time.perf_counter() - t0)
        if response.is_error:
            tally.fail(op, f"answered {response.status_code}: {response.text[:200]}")
        else:
            tally.complete(op)

    tasks = []
    for n in range(count):
        delay = start + n / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(n)))
    await asyncio.gather(*tasks)
    return latencies


async def run_phases(
    stack: BenchStack,
    rates: list[float],
    seconds: float,
    tallies: dict[tuple[float, str], Tally],
    figures: dict[tuple[float, str], dict[str, float]],
    profile: str | None,
    pause_worker: bool = False,
) -> None:
    settings = Settings(_env_file=None, database_url=stack.env["DATABASE_URL"])
    venue_tenant = f"bench-{uuid.uuid4().hex[:6]}"
    venue = {
        "Authorization": "Bearer "
        + issue_token(settings, subject="venue", tenant=venue_tenant, roles=["venue_admin"])
    }
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=200)
    async with httpx.AsyncClient(
        base_url=stack.api_url, timeout=TIMEOUT_SECONDS, limits=limits
    ) as http:
        places = sum(round(rate * seconds) for rate in rates) + 1  # and the warm-up's
        event = await create_event(http, venue, places)
        makers = requests_for(settings, event, venue_tenant)
        # warm-up: one request of each kind, so the first measured ones pay no first-call costs
        for name in ENDPOINTS:
            path, body, headers = makers[name](-1)
            (await http.post(path, json=body, headers=headers)).raise_for_status()
        if pause_worker and stack.worker is not None:
            stack.worker.send_signal(signal.SIGSTOP)
        try:
            await _phases(stack, http, makers, rates, seconds, tallies, figures, profile)
        finally:
            if pause_worker and stack.worker is not None:
                stack.worker.send_signal(signal.SIGCONT)


async def _phases(
    stack: BenchStack,
    http: httpx.AsyncClient,
    makers: dict[str, Callable[[int], Request]],
    rates: list[float],
    seconds: float,
    tallies: dict[tuple[float, str], Tally],
    figures: dict[tuple[float, str], dict[str, float]],
    profile: str | None,
) -> None:
    for rate in rates:
        for name in ENDPOINTS:
            tally = tallies[(rate, name)]
            name_profile = f"{profile}-{name}-{rate:g}" if profile else None
            async with measured(stack, name_profile) as cpu:
                latencies = await open_loop(http, makers[name], rate, seconds, tally)
            figures[(rate, name)] = {
                "p50": percentile(latencies, 0.5),
                "p99": percentile(latencies, 0.99),
                "max": max(latencies, default=float("nan")),
                "api_cpu_ms": cpu_ms(cpu, len(latencies)),
            }
            print(f"{name} at {rate:g}/s: {format_row(figures[(rate, name)])}", flush=True)
            await asyncio.sleep(PAUSE_SECONDS)


def cpu_ms(cpu: Measured, operations: int) -> float:
    return cpu.api / operations * 1000 if operations else float("nan")


def format_row(row: dict[str, float]) -> str:
    return (
        f"p50 {row['p50'] * 1000:.0f} ms, p99 {row['p99'] * 1000:.0f} ms, "
        f"max {row['max'] * 1000:.0f} ms, API CPU {row['api_cpu_ms']:.1f} ms per request"
    )


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="20,50", help="requests per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each phase")
    parser.add_argument(
        "--profile",
        metavar="NAME",
        help="py-spy flame graphs of the worker and the API for each phase, "
        "to bench/profiles/NAME-<endpoint>-<rate>-worker.svg and -api.svg",
    )
    parser.add_argument(
        "--pause-worker",
        action="store_true",
        help="stop the worker during the phases: the API's own latency, without the backlog",
    )
    parser.add_argument(
        "--deadline-seconds",
        type=float,
        default=DEADLINE_SECONDS,
        help="seconds from the start by which the run ends (default %(default).0f)",
    )
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    command = (
        f".venv/bin/python -m bench.accept_latency --rates {args.rates} --seconds {args.seconds:g}"
    )
    if args.profile:
        command += f" --profile {args.profile}"
    if args.pause_worker:
        command += " --pause-worker"
    print(f"reproduce: {command}", flush=True)
    deadline = Deadline(args.deadline_seconds)
    tallies = {
        (rate, name): Tally(f"{name} requests at {rate:g}/s", round(rate * args.seconds))
        for rate in rates
        for name in ENDPOINTS
    }
    figures: dict[tuple[float, str], dict[str, float]] = {}
    # the credential quota would refuse most anchors of one tenant past 1,000 a day
    extra = {"CREDENTIAL_ANCHOR_DAILY_QUOTA_PER_TENANT": "1000000"}
    async with bench_stack(None, 0.2, extra_env=extra) as stack, deadline.bound():
        await run_phases(
            stack, rates, args.seconds, tallies, figures, args.profile, args.pause_worker
        )
    lines = [
        f"Accept latency, open loop, {args.seconds:g} s per endpoint and rate, embedded defaults "
        + (
            "(worker stopped: the API's own latency)"
            if args.pause_worker
            else "(worker running the accepted operations behind the load)"
        ),
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}",
    ]
    for (rate, name), row in figures.items():
        lines.append(f"  {name:<9} {rate:>4g}/s  {format_row(row)}")
    lines.append(f"reproduce: {command}")
    print("\n" + "\n".join(lines) + "\n")
    return finish(list(tallies.values()), deadline)


if __name__ == "__main__":
    run_main(main)
