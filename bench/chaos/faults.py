"""The chaos run's faults: when each is injected (:func:`schedule`, pure) and injecting them
(:func:`inject`): a worker SIGKILLed and restarted, the dev server SIGKILLed and restarted on its
SQLite file, each provider failing in turn behind its proxy, PostgreSQL connections cut.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from enum import StrEnum

from bench.chaos.proxy import Mode
from bench.chaos.stack import ChaosStack


class FaultKind(StrEnum):
    WORKER_KILL = "worker killed (SIGKILL), restarted"
    SERVER_RESTART = "dev server killed (SIGKILL), restarted"
    OUTAGE = "provider outage"
    DB_CUT = "PostgreSQL connections terminated"


@dataclass(frozen=True)
class Fault:
    #: seconds from the start of the load
    at: float
    kind: FaultKind
    #: the worker's index, or the provider
    target: str = ""
    #: an outage's length
    seconds: float = 0.0


@dataclass
class Injected:
    fault: Fault
    #: when it really happened, from the start of the load
    at: float
    detail: str = ""


@dataclass
class FaultLog:
    injected: list[Injected] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _spread(count: int, start: float, end: float) -> list[float]:
    """``count`` instants evenly inside (start, end)."""
    if count <= 0:
        return []
    step = (end - start) / (count + 1)
    return [start + step * (i + 1) for i in range(count)]


def schedule(
    duration: float,
    *,
    worker_kills: int,
    server_restarts: int,
    providers: list[str],
    outage_seconds: float,
    db_cuts: int,
    workers: int = 2,
) -> list[Fault]:
    """Every fault of a run whose load lasts ``duration`` seconds, in time order.

    Worker kills, server restarts and connection cuts are spread evenly over the load (kills
    alternate between the workers); the provider outages follow each other from 5 % of the load,
    10 s apart, each ``outage_seconds`` long (they may run on past the load, into the drain).
    """
    faults = [
        Fault(at, FaultKind.WORKER_KILL, str(i % workers))
        for i, at in enumerate(_spread(worker_kills, 0, duration))
    ]
    # offset from the kills, so a restart does not land on a kill
    faults += [
        Fault(at + duration * 0.03, FaultKind.SERVER_RESTART)
        for at in _spread(server_restarts, 0, duration * 0.9)
    ]
    faults += [Fault(at, FaultKind.DB_CUT) for at in _spread(db_cuts, 0, duration)]
    at = duration * 0.05
    for provider in providers:
        faults.append(Fault(at, FaultKind.OUTAGE, provider, outage_seconds))
        at += outage_seconds + 10
    return sorted(faults, key=lambda f: f.at)


def outage_modes(faults: tuple[Mode, ...], seconds: float) -> list[tuple[Mode, float]]:
    """An outage of ``seconds`` as equal slices, one per fault mode in turn."""
    return [(mode, seconds / len(faults)) for mode in faults]


async def inject(stack: ChaosStack, faults: list[Fault], log: FaultLog) -> None:
    """Each fault at its time (from now); outages run beside the others. Returns when all are
    over, every proxy passing again."""
    t0 = time.monotonic()
    outages: list[asyncio.Task[None]] = []
    for fault in faults:
        await asyncio.sleep(max(0.0, t0 + fault.at - time.monotonic()))
        at = time.monotonic() - t0
        try:
            if fault.kind is FaultKind.WORKER_KILL:
                await stack.kill_worker(int(fault.target))
                log.injected.append(Injected(fault, at, f"worker{fault.target}"))
            elif fault.kind is FaultKind.SERVER_RESTART:
                await stack.restart_server()
                log.injected.append(Injected(fault, at))
            elif fault.kind is FaultKind.DB_CUT:
                cut = await stack.cut_database()
                log.injected.append(Injected(fault, at, f"{cut} connections"))
            else:
                outages.append(asyncio.create_task(_outage(stack, fault, at, log)))
        except Exception as exc:  # reported: a fault that was not injected must not count
            log.errors.append(
                f"{fault.kind} {fault.target} at {at:.0f} s: {type(exc).__name__}: {exc}"
            )
    await asyncio.gather(*outages)


async def _outage(stack: ChaosStack, fault: Fault, at: float, log: FaultLog) -> None:
    proxy = stack.proxies[fault.target]
    modes = outage_modes(proxy.faults, fault.seconds)
    log.injected.append(
        Injected(fault, at, f"{fault.target}: " + ", ".join(f"{m} {s:.0f} s" for m, s in modes))
    )
    try:
        for mode, seconds in modes:
            proxy.set_mode(mode)
            await asyncio.sleep(seconds)
    finally:
        proxy.set_mode(Mode.PASS)
