"""What every benchmark shares: one deadline per run, the outcome of each operation, the report
of what did not complete (with reasons) and the exit code.

A figure counts operations that completed. It means nothing if some never completed: a deposit
parked on an empty treasury, a purchase whose payment failed, anything still running when the
deadline came. So each benchmark keeps a :class:`Tally` per batch of operations, runs under one
:class:`Deadline`, and ends with :func:`finish`, which prints the tallies and gives the process's
exit code: 0 only when every expected operation completed.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import traceback
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from contextlib import asynccontextmanager
from enum import StrEnum
from typing import Any, NoReturn

#: how long the report may take to read what the open operations are waiting on
EXPLAIN_SECONDS = 30.0
#: example ids printed per reason
EXAMPLES = 3
#: longest reason printed (errors can carry whole responses)
REASON_CHARS = 240


class Outcome(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    #: waiting for an operator (``needs_attention``): it will not complete by itself
    PARKED = "parked"


class Deadline:
    """The run's end, fixed when it starts: nothing waits past it."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._end = clock() + seconds
        #: a :meth:`bound` block was cut short by the deadline
        self.hit = False

    def remaining(self) -> float:
        return self._end - self._clock()

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0

    @asynccontextmanager
    async def bound(self) -> AsyncIterator[None]:
        """Cancel the block when the deadline comes, and go on after it (see :attr:`hit`).

        Any other error, a ``TimeoutError`` of the block's own included, propagates.
        """
        try:
            async with asyncio.timeout(self.remaining()) as scope:
                yield
        except TimeoutError:
            if not scope.expired():
                raise
            self.hit = True


class Tally:
    """The operations of one batch (deposits, purchases, jobs ...) and how each ended.

    An operation is open from :meth:`start` until it is settled (:meth:`complete`, :meth:`fail`,
    :meth:`park`); a later settlement replaces an earlier one. :meth:`fail` takes operations that
    never got an id (a refused request) as well: name them as you like.
    """

    def __init__(self, name: str, expected: int, *, clock: Callable[[], float] = time.perf_counter):
        self.name = name
        self.expected = expected
        self._clock = clock
        self.started: dict[str, float] = {}
        #: completion time of each completed operation
        self.completed: dict[str, float] = {}
        self.failed: dict[str, str] = {}
        self.parked: dict[str, str] = {}
        #: what each open operation was doing when the run ended (see :meth:`note`)
        self.waiting_on: dict[str, str] = {}

    # -- recording ---------------------------------------------------------------------------

    def start(self, op: str, at: float | None = None) -> None:
        self.started.setdefault(op, self._clock() if at is None else at)

    def complete(self, op: str, at: float | None = None) -> None:
        self._forget(op)
        self.completed[op] = self._clock() if at is None else at

    def fail(self, op: str, reason: str) -> None:
        self._forget(op)
        self.failed[op] = reason

    def park(self, op: str, reason: str) -> None:
        self._forget(op)
        self.parked[op] = reason

    def settle(self, op: str, outcome: Outcome, reason: str = "") -> None:
        if outcome is Outcome.COMPLETED:
            self.complete(op)
        elif outcome is Outcome.FAILED:
            self.fail(op, reason)
        else:
            self.park(op, reason)

    def note(self, op: str, state: str) -> None:
        """Say what an open operation is waiting on (its row's status, its workflow's)."""
        if self.is_open(op):
            self.waiting_on[op] = state

    def _forget(self, op: str) -> None:
        self.completed.pop(op, None)
        self.failed.pop(op, None)
        self.parked.pop(op, None)
        self.waiting_on.pop(op, None)

    # -- reading -----------------------------------------------------------------------------

    def is_settled(self, op: str) -> bool:
        return op in self.completed or op in self.failed or op in self.parked

    def is_open(self, op: str) -> bool:
        return op in self.started and not self.is_settled(op)

    def open(self) -> list[str]:
        return [op for op in self.started if not self.is_settled(op)]

    @property
    def settled(self) -> int:
        return len(self.completed) + len(self.failed) + len(self.parked)

    @property
    def finished(self) -> bool:
        """Every expected operation is settled: waiting longer changes nothing."""
        return self.settled >= self.expected

    @property
    def meaningful(self) -> bool:
        """Every expected operation completed, none failed or parked."""
        return len(self.completed) >= self.expected and not self.failed and not self.parked

    def durations(self) -> list[float]:
        """Start to completion, for each completed operation that was started."""
        return [t - self.started[op] for op, t in self.completed.items() if op in self.started]

    def report(self, deadline: Deadline | None = None) -> list[str]:
        open_ops = self.open()
        never_started = max(self.expected - len(self.started) - self._unstarted_settled(), 0)
        unfinished = "by the deadline" if deadline is not None and deadline.hit else "when it ended"
        counts = [f"{len(self.completed)} completed"]
        if self.parked:
            counts.append(f"{len(self.parked)} parked")
        if self.failed:
            counts.append(f"{len(self.failed)} failed")
        if open_ops:
            counts.append(f"{len(open_ops)} still open {unfinished}")
        if never_started:
            counts.append(f"{never_started} never started")
        lines = [f"{self.name}: {self.expected} expected, " + ", ".join(counts)]
        lines += _grouped("parked", self.parked)
        lines += _grouped("failed", self.failed)
        lines += _grouped(
            f"still open {unfinished}",
            {op: self.waiting_on.get(op, "no state read") for op in open_ops},
        )
        return lines

    def _unstarted_settled(self) -> int:
        """Settled operations that were never started (a refused request has no id to start)."""
        return sum(
            1
            for bucket in (self.completed, self.failed, self.parked)
            for op in bucket
            if op not in self.started
        )


def _grouped(label: str, reasons: dict[str, str]) -> list[str]:
    """``label (n):`` then one line per distinct reason, most frequent first, with examples."""
    if not reasons:
        return []
    by_reason: dict[str, list[str]] = defaultdict(list)
    for op, reason in reasons.items():
        by_reason[_clip(reason or "no reason recorded")].append(op)
    lines = [f"  {label} ({len(reasons)}):"]
    for reason, ops in sorted(by_reason.items(), key=lambda item: (-len(item[1]), item[0])):
        examples = ", ".join(ops[:EXAMPLES]) + (", ..." if len(ops) > EXAMPLES else "")
        lines.append(f"    {len(ops)} x {reason}  (e.g. {examples})")
    return lines


def _clip(reason: str) -> str:
    flat = " ".join(reason.split())
    return flat if len(flat) <= REASON_CHARS else flat[: REASON_CHARS - 3] + "..."


async def explain(tally: Tally, read: Callable[[list[str]], Coroutine[Any, Any, object]]) -> None:
    """Let ``read`` settle or :meth:`~Tally.note` the tally's open operations, within
    :data:`EXPLAIN_SECONDS` (the report must not wait forever either)."""
    open_ops = tally.open()
    if not open_ops:
        return
    try:
        await asyncio.wait_for(read(open_ops), EXPLAIN_SECONDS)
    except Exception as exc:  # the report still prints, without the states
        for op in tally.open():
            tally.note(op, f"state unreadable: {type(exc).__name__}: {exc}")


def finish(tallies: Iterable[Tally], deadline: Deadline) -> int:
    """Print every tally; the exit code: 0 only when every tally is meaningful."""
    tallies = list(tallies)
    lines = ["outcomes:"]
    for tally in tallies:
        lines += ["  " + line for line in tally.report(deadline)]
    meaningful = all(t.meaningful for t in tallies) and not deadline.hit
    if deadline.hit:
        lines.append(f"the deadline ({deadline.seconds:.0f} s) ended the run")
    lines.append(
        "every operation completed: the figures stand"
        if meaningful
        else "NOT MEANINGFUL: some operations did not complete (see above); exit status 1"
    )
    print("\n".join(lines), flush=True)
    return 0 if meaningful else 1


def run_main(main: Callable[[], Coroutine[Any, Any, int]]) -> NoReturn:
    """Run a benchmark's ``main`` and leave with its exit code (1 on an error).

    ``os._exit``: a client library's leftover thread must not keep a finished benchmark alive.
    """
    try:
        code = asyncio.run(main())
    except SystemExit as exc:  # argparse: --help, a bad option
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    except KeyboardInterrupt:
        code = 130
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
