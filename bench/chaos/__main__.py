"""``python -m bench.chaos`` (``make chaos``): Settle under a mixed load while faults are
injected on a schedule, then every external effect reconciled one to one against its rows.

    .venv/bin/python -m bench.chaos                      # the full run (defaults below)
    .venv/bin/python -m bench.chaos --operations 120 --duration 100 --worker-kills 3 \\
        --server-restarts 1 --providers daraja --outage-seconds 30 --db-cuts 3

The stack is ``make run``'s, on free ports with its data in a new folder: embedded PostgreSQL, the
Temporal dev server, 2 worker processes, 2 API processes, anvil, and the sandboxes (Daraja,
Stripe, Solana, SMTP, IPFS) each behind a fault-injecting proxy. Exit status 0 only when nothing
was lost or duplicated and every operation ended or parked with a reason.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.chaos.effects import Effects, collect
from bench.chaos.faults import FaultLog, inject, schedule
from bench.chaos.load import Load, run_load
from bench.chaos.operations import plan
from bench.chaos.report import Verdict, as_json, render, verdict
from bench.chaos.stack import PROVIDERS, chaos_stack, environment_summary
from bench.outcomes import run_main
from runtime.logging import configure_logging


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--operations", type=int, default=1000, help="operations started (default %(default)s)"
    )
    p.add_argument(
        "--duration",
        type=float,
        default=900.0,
        help="seconds over which they start (default %(default).0f)",
    )
    p.add_argument(
        "--drain",
        type=float,
        default=300.0,
        help="seconds after that for the open ones to end (default %(default).0f)",
    )
    p.add_argument(
        "--worker-kills",
        type=int,
        default=20,
        help="worker SIGKILLs, each restarted (default %(default)s)",
    )
    p.add_argument(
        "--server-restarts",
        type=int,
        default=2,
        help="dev server SIGKILLs, each restarted on its DB file (default %(default)s)",
    )
    p.add_argument(
        "--providers",
        default=",".join(PROVIDERS),
        help="providers failing in turn, comma-separated, '' for none (default %(default)s)",
    )
    p.add_argument(
        "--outage-seconds",
        type=float,
        default=120.0,
        help="each provider's outage (default %(default).0f)",
    )
    p.add_argument(
        "--db-cuts",
        type=int,
        default=20,
        help="times every PostgreSQL connection is terminated (default %(default)s)",
    )
    p.add_argument("--json", help="also write the verdict and every finding to this file")
    p.add_argument(
        "--clean",
        action="store_true",
        help="remove the run's folder (logs, databases) when it passes; kept when it fails",
    )
    p.add_argument(
        "--seed", type=int, default=14, help="chooses the operations' mix (default %(default)s)"
    )
    return p


def command_of(args: argparse.Namespace) -> str:
    return (
        f".venv/bin/python -m bench.chaos --operations {args.operations} --duration {args.duration:g} "
        f"--drain {args.drain:g} --worker-kills {args.worker_kills} --server-restarts {args.server_restarts} "
        f"--providers '{args.providers}' --outage-seconds {args.outage_seconds:g} --db-cuts {args.db_cuts} "
        f"--seed {args.seed}"
    )


async def chaos(args: argparse.Namespace) -> tuple[Verdict, str, Path]:
    """One whole run; its verdict, printed table and folder."""
    providers = [p for p in args.providers.split(",") if p]
    unknown = set(providers) - set(PROVIDERS)
    if unknown:
        raise SystemExit(f"unknown providers {sorted(unknown)}: choose from {','.join(PROVIDERS)}")
    ops = plan(args.operations, args.seed)
    faults = schedule(
        args.duration,
        worker_kills=args.worker_kills,
        server_restarts=args.server_restarts,
        providers=providers,
        outage_seconds=args.outage_seconds,
        db_cuts=args.db_cuts,
    )
    log = FaultLog()
    configure_logging("WARNING")  # the sandboxes run in this process: their news is the table
    command = command_of(args)
    print(f"reproduce: {command}", flush=True)
    async with chaos_stack() as stack:
        load = Load(stack, ops)
        await load.prepare()
        print(
            f"stack ready; {len(ops)} operations over {args.duration:.0f} s, {len(faults)} faults",
            flush=True,
        )
        started = time.perf_counter()
        began = f"load started at {datetime.now(UTC):%H:%M:%S} UTC (fault times count from here)"
        print(began, flush=True)
        stop = asyncio.Event()
        injecting = asyncio.create_task(inject(stack, faults, log))
        await run_load(load, args.duration, args.drain, stop, faults=injecting)
        await injecting
        elapsed = time.perf_counter() - started
        effects: Effects = await collect(stack, ops)
        table = render(
            ops, effects, log, command=command, elapsed=elapsed, machine=environment_summary()
        )
        table += f"\nclient retries (answers saying nothing was done, or none): {load.retries}"
        table += f"\n{began}\nlogs and data: {stack.workdir}"
        if args.json:
            await asyncio.to_thread(
                Path(args.json).write_text, json.dumps(as_json(ops, effects, log), indent=2)
            )
    return verdict(ops, effects, log), table, stack.workdir


async def main() -> int:
    args = parser().parse_args()
    result, table, workdir = await chaos(args)
    print("\n" + table, flush=True)
    if args.clean and result.ok:
        await asyncio.to_thread(shutil.rmtree, workdir, True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    run_main(main)
