"""Benchmark: on-chain deposit watching, the scanner design against a per-intent poll.

    .venv/bin/python -m bench.deposit_watch [--counts 1,100,10000] [--window 60]

The dev stack runs as under ``make run`` (anvil with 2 s blocks, as on Base), with a JSON-RPC
proxy between Settle and anvil that counts every call. For each number of open intents:

* scanner design: RPC calls per minute made by Settle (scanner + watches + everything) while the
  intents sit open, counted by the proxy over ``--window`` seconds;
* per-intent poll (the old repeating job): each intent asks ``eth_blockNumber`` and
  ``eth_getLogs`` for its own address every 30 s. It is driven for real against anvil for the same
  window, and the calls it managed per minute are printed next to what the design requires;
* the worker's CPU (% of one core) over the same window, which starts ``--settle-seconds``
  after the last intent was created (the creations' own workflow tasks done), and its RSS at the
  end; ``--py-spy FILE.svg`` records the worker's profile over the largest count's window;
* detection latency: for a batch of deposits, from the block that gives the transfer its N
  confirmations to the intent being credited.

Settle's database is an embedded PostgreSQL of the run's own unless ``--database-url`` names one.
The run ends by ``--deadline-seconds`` whatever happens. Intents that are refused, close before
their measurement, or are not paid by the transfer sent to them are counted with their statuses,
and the exit status is 1 unless every one of them behaved (see ``bench/outcomes.py``).
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
import psutil
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.auth import issue_token
from bench.outcomes import Deadline, Tally, explain, finish, run_main
from bench.stack import BenchStack, bench_stack
from domain.deposit_watch import OPEN_STATUSES, IntentStatus
from providers.evm import EvmClient, LocalSigner, LogFilter
from providers.evm.erc20 import TRANSFER_TOPIC
from runtime.settings import Settings
from sandbox.chain import mint_usdc
from sandbox.payer import Payer
from store.db import make_engine, make_session_factory
from store.models import DepositIntent

POLL_SECONDS = 30.0
#: the default configuration (20 latency deposits; 1, 100 and 10,000 intents, two windows of
#: 60 s each) takes about a quarter of an hour on 2 cores, creating 10,000 intents included
DEADLINE_SECONDS = 2400.0


async def create_intents(
    stack: BenchStack, settings: Settings, count: int, tally: Tally, concurrency: int = 40
) -> list[dict]:
    """``count`` intents through the API, each started in ``tally`` (or failed, when refused)."""
    token = issue_token(
        settings, subject="bench", tenant=f"bench-{uuid.uuid4().hex[:6]}", roles=["user"]
    )
    headers = {"Authorization": f"Bearer {token}"}
    gate = asyncio.Semaphore(concurrency)
    made: list[dict] = []
    busy: list[int] = []
    started = time.perf_counter()
    first = len(tally.started) + len(tally.failed)

    async def one(http: httpx.AsyncClient, n: int) -> None:
        async with gate:
            try:
                for attempt in range(10):
                    response = await http.post(
                        "/api/v1/deposit/intent/create",
                        json={"amount": "10", "chain": "base"},
                        headers=headers,
                    )
                    if response.status_code != 503:
                        break
                    busy.append(attempt)  # nothing was created: retry, as a client should
                    await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
            except httpx.HTTPError as exc:
                tally.fail(f"create-{n}", f"create: {type(exc).__name__}: {exc}")
                return
            if response.is_error:
                reason = f"create answered {response.status_code}: {response.text}"
                tally.fail(f"create-{n}", reason)
                return
            made.append(response.json())
            tally.start(response.json()["id"])
            if len(made) % 1000 == 0:
                rate = len(made) / (time.perf_counter() - started)
                print(f"  {len(made)} intents created ({rate:.0f}/s)", flush=True)

    async with httpx.AsyncClient(base_url=stack.api_url, timeout=120) as http:
        await asyncio.gather(*(one(http, first + n) for n in range(count)))
    if busy:
        print(f"  {len(busy)} creations answered 503 and were retried", flush=True)
    return made


async def read_intents(
    sessions: async_sessionmaker[AsyncSession], tally: Tally, ids: list[str], done: str
) -> None:
    """Settle intents from their rows: ``done`` completes, an open status waits, any other
    (expired, stopped, overpaid ...) fails."""
    async with sessions() as session:
        rows = await session.execute(
            select(DepositIntent.id, DepositIntent.status).where(DepositIntent.id.in_(ids))
        )
    for intent_id, status in rows:
        if status == done:
            tally.complete(intent_id)
        elif status in OPEN_STATUSES:
            tally.note(intent_id, f"status {status}")
        else:
            tally.fail(intent_id, f"status {status}")


async def check_open(settings: Settings, tally: Tally) -> None:
    """Every created intent must still be open for the call rates to count its watch."""
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    try:
        await read_intents(sessions, tally, tally.open(), IntentStatus.OPEN)
    finally:
        await explain(tally, lambda ids: read_intents(sessions, tally, ids, IntentStatus.OPEN))
        await engine.dispose()


async def scanner_calls_per_minute(stack: BenchStack, window: float) -> dict[str, float]:
    assert stack.proxy is not None
    stack.proxy.reset()
    await asyncio.sleep(window)
    per_minute = 60.0 / window
    calls = dict(stack.proxy.calls)
    return {
        "total": sum(calls.values()) * per_minute,
        **{m: n * per_minute for m, n in calls.items()},
    }


async def per_intent_poll(
    anvil_url: str, addresses: list[str], usdc: str, window: float
) -> dict[str, float]:
    """The old design, for real: every intent polls its own address every 30 s."""
    client = EvmClient(anvil_url, chain_id=31337, timeout_seconds=30)
    head = await client.block_number()
    gate = asyncio.Semaphore(64)
    deadline = time.monotonic() + window
    offsets = [POLL_SECONDS * i / len(addresses) for i in range(len(addresses))]  # spread like cron

    async def poller(address: str, offset: float) -> None:
        await asyncio.sleep(offset)
        topic = "0x" + address.lower()[2:].rjust(64, "0")
        while time.monotonic() < deadline:
            async with gate:
                latest = await client.block_number()
                await client.get_logs(LogFilter(head, latest, usdc, [TRANSFER_TOPIC, None, topic]))
            await asyncio.sleep(POLL_SECONDS)

    started = time.monotonic()
    tasks = [asyncio.create_task(poller(a, o)) for a, o in zip(addresses, offsets, strict=True)]
    await asyncio.sleep(window)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    elapsed = time.monotonic() - started
    await client.aclose()
    return {
        "achieved": sum(client.calls.values()) * 60.0 / elapsed,
        "required": len(addresses) * 2 * 60.0 / POLL_SECONDS,
    }


def py_spy_binary() -> str:
    """py-spy next to this interpreter (the venv), else on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return beside if os.path.exists(beside) else "py-spy"


async def start_py_spy(
    stack: BenchStack, output: str, seconds: float
) -> asyncio.subprocess.Process:
    """``py-spy record`` of the worker for ``seconds`` (py-spy must be installed)."""
    assert stack.worker is not None
    command = ["py-spy", "record", "-o", output, "--pid", str(stack.worker.pid)]
    command += ["--duration", str(int(seconds))]
    print(f"  {' '.join(command)}", flush=True)
    command[0] = py_spy_binary()
    return await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )


def worker_usage(stack: BenchStack, seconds: float = 10.0) -> dict[str, float]:
    assert stack.worker is not None
    process = psutil.Process(stack.worker.pid)
    process.cpu_percent(None)
    time.sleep(seconds)
    return {"cpu_percent": process.cpu_percent(None), "rss_mb": process.memory_info().rss / 2**20}


async def detection_latency(
    stack: BenchStack, settings: Settings, tally: Tally, latencies: list[float]
) -> None:
    """Seconds from the block that completes N confirmations to the intent being credited, one
    deposit after the other, into ``latencies``."""
    anvil = EvmClient(stack.anvil_url, chain_id=31337)
    payer = Payer(anvil, settings.usdc_contract_address)
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    try:
        await mint_usdc(
            anvil,
            LocalSigner(settings.sandbox_deployer_private_key),
            payer.usdc,
            payer.address,
            10**12,
        )
        intents = await create_intents(stack, settings, tally.expected, tally, concurrency=5)
        confirmations = settings.evm_confirmations
        for intent in intents:
            receipt = await payer.pay(intent["address"], 10_000_000)
            target = int(receipt["blockNumber"], 16) + confirmations - 1
            confirmed_at: float | None = None
            while not tally.is_settled(intent["id"]):
                now = time.perf_counter()
                if confirmed_at is None and await anvil.block_number() >= target:
                    confirmed_at = now
                await read_intents(sessions, tally, [intent["id"]], IntentStatus.PAID)
                if intent["id"] in tally.completed:
                    latencies.append(now - (confirmed_at or now))
                await asyncio.sleep(0.05)
    finally:
        await explain(tally, lambda ids: read_intents(sessions, tally, ids, IntentStatus.PAID))
        await engine.dispose()
        await anvil.aclose()


def percentile(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) < 100:
        return statistics.median(values) if q == 50 else max(values)
    return statistics.quantiles(values, n=100)[q - 1]


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--counts", default="1,100,10000")
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--latency-deposits", type=int, default=20)
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=30.0,
        help="wait after the last creation before the window starts (default %(default).0f)",
    )
    parser.add_argument("--py-spy", default=None, help="record the worker's profile (an SVG)")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting for the stack, e.g. DEPOSIT_WATCH_FALLBACK_SECONDS=60 (repeatable)",
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
    args = parser.parse_args()
    counts = sorted(int(c) for c in args.counts.split(","))
    print(
        "reproduce: .venv/bin/python -m bench.deposit_watch "
        f"--counts {args.counts} --window {args.window:.0f} "
        f"--latency-deposits {args.latency_deposits} --settle-seconds {args.settle_seconds:.0f}"
        + (f" --database-url {args.database_url}" if args.database_url else "")
        + "".join(f" --env {e}" for e in args.env),
        flush=True,
    )
    print(f"On-chain deposit watching, anvil with 2 s blocks, {os.cpu_count()} cores", flush=True)
    database = "external PostgreSQL" if args.database_url else "embedded PostgreSQL"
    print(f"Settle's database: {database}", flush=True)
    deadline = Deadline(args.deadline_seconds)
    latency = Tally("latency deposits (intent paid)", args.latency_deposits)
    intents = Tally("open intents (created, still open)", counts[-1])
    latencies: list[float] = []
    extra = dict(e.split("=", 1) for e in args.env)
    async with (
        bench_stack(args.database_url, 0.2, extra_env=extra) as stack,
        deadline.bound(),
    ):
        settings = Settings(_env_file=None, database_url=stack.env["DATABASE_URL"])
        # latency first, on a quiet stack: the per-intent poll flood below loads anvil
        await detection_latency(stack, settings, latency, latencies)
        print(
            f"detection latency, N-th confirmation block -> credited, {len(latencies)} "
            f"deposits: p50 {percentile(latencies, 50):.2f} s, "
            f"p99 {percentile(latencies, 99):.2f} s",
            flush=True,
        )
        addresses: list[str] = []
        already_paid = len(latencies)
        for count in counts:
            made = await create_intents(stack, settings, count - len(addresses), intents)
            addresses += [m["address"] for m in made]
            # let the new watches reach their first timer (the creation backlog drained)
            await asyncio.sleep(args.settle_seconds)
            await check_open(settings, intents)
            print(f"{len(addresses)} intents open; measuring for {args.window:.0f} s", flush=True)
            profile = (
                await start_py_spy(stack, args.py_spy, args.window)
                if args.py_spy and count == counts[-1]
                else None
            )
            scanner, usage = await asyncio.gather(
                scanner_calls_per_minute(stack, args.window),
                asyncio.to_thread(worker_usage, stack, args.window),
            )
            detail = ", ".join(f"{m} {n:.0f}" for m, n in sorted(scanner.items()) if m != "total")
            print(f"  scanner design: {scanner['total']:.0f} calls/min ({detail})", flush=True)
            print(
                f"  worker with {count} open watches ({already_paid} paid before), "
                f"{args.window:.0f} s from {args.settle_seconds:.0f} s after the last creation: "
                f"CPU {usage['cpu_percent']:.1f} % of one core, RSS {usage['rss_mb']:.0f} MB",
                flush=True,
            )
            if profile is not None:
                await profile.wait()
                print(f"  worker profile: {args.py_spy} (exit {profile.returncode})", flush=True)
            poll = await per_intent_poll(
                stack.anvil_url, addresses, settings.usdc_contract_address, args.window
            )
            print(
                f"  per-intent poll every {POLL_SECONDS:.0f} s: {poll['required']:.0f} "
                f"calls/min required ({poll['achieved']:.0f} achieved against anvil)",
                flush=True,
            )
    return finish([latency, intents], deadline)


if __name__ == "__main__":
    run_main(main)
