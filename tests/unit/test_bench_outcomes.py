"""The benchmarks' shared ending: a deadline cuts a run short and the report says what was left,
parked and failed operations are counted by reason, and only a complete run exits 0."""

from __future__ import annotations

import asyncio

import pytest

from bench.outcomes import Deadline, Outcome, Tally, explain, finish


async def test_deadline_hit_with_open_operations_lists_them_and_exits_non_zero(
    capsys: pytest.CaptureFixture[str],
) -> None:
    deadline = Deadline(0.2)
    tally = Tally("deposits", 4)

    async def run() -> None:
        tally.start("d1")
        tally.complete("d1")
        tally.start("d2")
        tally.start("d3")
        await asyncio.Event().wait()  # d2 and d3 never settle: only the deadline ends this

    async with deadline.bound():
        await run()

    async def read(ids: list[str]) -> None:
        for op in ids:
            tally.note(op, "status sending_usdc")

    await explain(tally, read)
    code = finish([tally], deadline)
    out = capsys.readouterr().out

    assert deadline.hit
    assert code == 1
    assert "deposits: 4 expected, 1 completed, 2 still open by the deadline, 1 never started" in out
    assert "2 x status sending_usdc  (e.g. d2, d3)" in out
    assert "NOT MEANINGFUL" in out


async def test_parked_and_failed_are_counted_by_reason(capsys: pytest.CaptureFixture[str]) -> None:
    deadline = Deadline(60)
    tally = Tally("deposits", 6)
    for n in range(6):
        tally.start(f"d{n}")
    for n in range(3):
        tally.park(f"d{n}", "send_usdc failed: EvmReverted: custom error 0xcf479181")
    tally.park("d3", "convert failed: FxUnavailable")
    tally.fail("request-9", "initiate answered 422: amount")  # refused: never had an id
    tally.settle("d4", Outcome.COMPLETED)
    tally.settle("d5", Outcome.FAILED, "failed: cancelled by the customer")

    async with deadline.bound():
        pass
    code = finish([tally], deadline)
    out = capsys.readouterr().out

    assert not deadline.hit
    assert tally.finished
    assert code == 1
    assert "1 completed, 4 parked, 2 failed" in out
    assert "parked (4):" in out
    assert "3 x send_usdc failed: EvmReverted: custom error 0xcf479181  (e.g. d0, d1, d2)" in out
    assert "1 x convert failed: FxUnavailable" in out
    assert "1 x initiate answered 422: amount  (e.g. request-9)" in out
    assert "never started" not in out


async def test_every_operation_completed_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    deadline = Deadline(60)
    tally = Tally("purchases", 2, clock=iter([1.0, 2.0, 4.0, 7.0]).__next__)
    tally.start("p1")
    tally.start("p2")
    tally.park("p1", "parked for a moment")
    tally.complete("p1")  # an operator retried it: the later outcome stands
    tally.complete("p2")

    assert finish([tally], deadline) == 0
    assert tally.durations() == [3.0, 5.0]
    assert "the figures stand" in capsys.readouterr().out


async def test_an_error_of_the_block_itself_is_not_taken_for_the_deadline() -> None:
    deadline = Deadline(60)
    with pytest.raises(TimeoutError):
        async with deadline.bound():
            raise TimeoutError("the stack did not come up")
    assert not deadline.hit


async def test_explain_gives_up_on_a_read_that_fails() -> None:
    tally = Tally("jobs", 1)
    tally.start("j1")

    async def read(ids: list[str]) -> None:
        raise ConnectionError("database gone")

    await explain(tally, read)
    assert tally.waiting_on == {"j1": "state unreadable: ConnectionError: database gone"}
