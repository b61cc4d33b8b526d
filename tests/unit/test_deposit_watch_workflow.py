"""DepositWatch's timers on the time-skipping server, with mocked chain and DB activities: an hour
of fallback timers takes well under a second."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.client import WorkflowHistory
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from domain.deposit_watch import (
    CheckTransfersInput,
    CheckTransfersResult,
    CloseIntentInput,
    CreditTransferInput,
    DepositWatchInput,
    DepositWatchState,
    FallbackInput,
    FallbackResult,
    IntentStatus,
    IntentTotals,
    LateCreditInput,
    LateCreditState,
    MarkTransferInput,
    TransferCheck,
    TransferSeen,
    WatchConfig,
)
from domain.queues import ActivityQueue
from domain.search import SETTLE_STATUS, OperationKind, start_attributes
from tests.fixtures.temporal import new_prefix, running_workers
from workflows.deposit_watch import DepositWatch, LateTransferCredit


def transfer(n: int, amount: int, block: int = 100, block_hash: str = "0xaa") -> TransferSeen:
    return TransferSeen(
        tx_hash=f"0x{n:064x}",
        log_index=0,
        block_number=block,
        block_hash=block_hash,
        from_address="0xpayer",
        amount_minor=amount,
    )


@dataclass
class FakeChain:
    """``outcomes[tx_key]``: the answers check_transfers gives for that transfer, in order."""

    outcomes: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    fallback_answers: list[list[TransferSeen]] = field(default_factory=list)
    #: whether the scanner's checkpoint is fresh at each look, in order (the last one repeats)
    fresh_answers: list[bool] = field(default_factory=lambda: [True])
    #: the workflow time of each fallback look
    looked_at: list = field(default_factory=list)
    checks: int = 0
    fallbacks: int = 0
    credited: list[TransferSeen] = field(default_factory=list)
    marked: list[MarkTransferInput] = field(default_factory=list)
    closed: list[CloseIntentInput] = field(default_factory=list)
    #: how many credits fail (non-retryably, as a zero posting did) before they succeed
    credit_failures: int = 0
    #: how many closes the database refuses (a constraint) before one is recorded
    close_refusals: int = 0

    def activities(self) -> dict[ActivityQueue, list]:
        @activity.defn(name="chain.check_transfers")
        async def check_transfers(request: CheckTransfersInput) -> CheckTransfersResult:
            self.checks += 1
            checks = []
            for t in request.transfers:
                answers = self.outcomes.get(t.key, [("confirmed", 0)])
                outcome, to_go = answers.pop(0) if len(answers) > 1 else answers[0]
                checks.append(TransferCheck(transfer=t, outcome=outcome, blocks_to_go=to_go))
            return CheckTransfersResult(checks=checks, head=200)

        @activity.defn(name="chain.fallback_transfers")
        async def fallback_transfers(request: FallbackInput) -> FallbackResult:
            self.fallbacks += 1
            self.looked_at.append(activity.info().current_attempt_scheduled_time)
            found = self.fallback_answers.pop(0) if self.fallback_answers else []
            answers = self.fresh_answers
            fresh = answers.pop(0) if len(answers) > 1 else answers[0]
            return FallbackResult(transfers=found, queried_chain=not fresh, scanner_fresh=fresh)

        @activity.defn(name="intents.credit_transfer")
        async def credit_transfer(request: CreditTransferInput) -> IntentTotals:
            if self.credit_failures > 0:
                self.credit_failures -= 1
                raise ApplicationError(
                    "a posting of zero moves nothing", type="UnbalancedEntry", non_retryable=True
                )
            self.credited.append(request.transfer)
            return IntentTotals(
                intent_id=request.intent_id,
                received_minor=sum(t.amount_minor for t in self.credited),
                credited_now=True,
            )

        @activity.defn(name="intents.mark_transfer")
        async def mark_transfer(request: MarkTransferInput) -> None:
            self.marked.append(request)

        @activity.defn(name="intents.close")
        async def close(request: CloseIntentInput) -> str:
            if self.close_refusals > 0:
                self.close_refusals -= 1
                raise ApplicationError(
                    'UniqueViolation: duplicate key value violates unique constraint "uq_x"',
                    type="UniqueViolation",
                    non_retryable=True,
                )
            self.closed.append(request)
            return request.status.value

        return {
            ActivityQueue.EVM_READ: [check_transfers, fallback_transfers],
            ActivityQueue.DB: [credit_transfer, mark_transfer, close],
        }


@pytest.fixture
def env(time_skipping_env: WorkflowEnvironment) -> WorkflowEnvironment:
    return time_skipping_env


async def run_watch(
    env: WorkflowEnvironment,
    fake: FakeChain,
    amount: int,
    *,
    ttl: timedelta = timedelta(hours=1),
    signals=(),
    config: WatchConfig | None = None,
    before_result=None,
    scanner_fresh: bool = False,
) -> DepositWatchState:
    prefix = new_prefix()
    async with running_workers(
        env.client, prefix, workflows=[DepositWatch], activities=fake.activities()
    ):
        now = await env.get_current_time()
        intent_id = str(uuid.uuid4())
        handle = await env.client.start_workflow(
            DepositWatch.run,
            DepositWatchInput(
                intent_id=intent_id,
                tenant="t",
                user_id="u",
                subject="s",
                chain="base",
                chain_id=31337,
                address="0xintent",
                amount_minor=amount,
                expires_at=now + ttl,
                start_block=90,
                config=config or WatchConfig(),
                scanner_fresh=scanner_fresh,
                task_queue_prefix=prefix,
            ),
            id=f"deposit-watch-{intent_id}",
            task_queue=f"{prefix}workflows",
            search_attributes=start_attributes(OperationKind.DEPOSIT_WATCH, "t", "s"),
        )
        for seen in signals:
            await handle.signal(DepositWatch.transfer_seen, seen)
        if before_result is not None:
            await before_result(handle)
        return await handle.result()


async def test_expiry_with_nothing_after_an_hour_of_fallback_timers(
    env: WorkflowEnvironment,
) -> None:
    fake = FakeChain()
    state = await run_watch(env, fake, 5_000_000)
    assert state.status == IntentStatus.EXPIRED
    assert fake.fallbacks == 12  # every 5 min for 60 min: the scanner is the fast path
    assert fake.closed[-1].status == IntentStatus.EXPIRED


QUIET = WatchConfig(fallback_interval_seconds=300, healthy_fallback_interval_seconds=1800)


def minutes_after_first(fake: FakeChain, started) -> list[int]:
    return [round((t - started).total_seconds() / 60) for t in fake.looked_at]


async def test_a_fresh_scanner_lets_the_watch_look_only_every_healthy_interval(
    env: WorkflowEnvironment,
) -> None:
    """10,000 watches looking every 5 min kept a worker busy on an idle chain: while the
    scanner is fresh (it signals transfers), the look is a safety net every 30 min, and at expiry."""
    fake = FakeChain(fresh_answers=[True])
    started = await env.get_current_time()
    state = await run_watch(env, fake, 5_000_000, config=QUIET, scanner_fresh=True)
    assert state.status == IntentStatus.EXPIRED
    assert minutes_after_first(fake, started) == [30, 60]


async def test_a_stale_scanner_brings_the_short_interval_back(env: WorkflowEnvironment) -> None:
    fake = FakeChain(fresh_answers=[False, False, True])
    started = await env.get_current_time()
    state = await run_watch(env, fake, 5_000_000, config=QUIET, scanner_fresh=True)
    assert state.status == IntentStatus.EXPIRED
    # fresh at creation: 30 min; stale there and at 35: every 5 min; fresh at 40: 30 min, capped
    assert minutes_after_first(fake, started) == [30, 35, 40, 60]


async def test_a_watch_made_while_the_scanner_is_stale_looks_soon(
    env: WorkflowEnvironment,
) -> None:
    fake = FakeChain(fallback_answers=[[transfer(7, 2_000_000)]], fresh_answers=[False])
    state = await run_watch(env, fake, 2_000_000, config=QUIET, scanner_fresh=False)
    assert state.status == IntentStatus.PAID
    assert fake.fallbacks == 1


async def test_max_checks_stops_the_watch(env: WorkflowEnvironment) -> None:
    fake = FakeChain()
    state = await run_watch(env, fake, 5_000_000, config=WatchConfig(max_checks=5))
    assert state.status == IntentStatus.STOPPED
    assert state.checks == 5


async def test_confirmations_are_waited_for_with_timers_sized_to_the_blocks_to_go(
    env: WorkflowEnvironment,
) -> None:
    seen = transfer(1, 5_000_000)
    fake = FakeChain(outcomes={seen.key: [("pending", 10), ("pending", 1), ("confirmed", 0)]})
    state = await run_watch(env, fake, 5_000_000, signals=[seen])
    assert state.status == IntentStatus.PAID
    assert fake.checks == 3
    assert [t.key for t in fake.credited] == [seen.key]
    assert fake.fallbacks == 0


async def test_reorged_transfer_is_not_credited_and_the_watch_goes_on(
    env: WorkflowEnvironment,
) -> None:
    gone = transfer(1, 5_000_000, block_hash="0xold")
    again = transfer(1, 5_000_000, block=105, block_hash="0xnew")  # re-included after the reorg
    fake = FakeChain(outcomes={gone.key: [("reorged", 0)]})

    async def reinclude(handle) -> None:
        for _ in range(200):
            if (await handle.query(DepositWatch.status)).reorged:
                break
            await asyncio.sleep(0.02)
        fake.outcomes[again.key] = [("confirmed", 0)]
        await handle.signal(DepositWatch.transfer_seen, again)

    state = await run_watch(env, fake, 5_000_000, signals=[gone], before_result=reinclude)
    assert state.status == IntentStatus.PAID
    assert [m.transfer.block_hash for m in fake.marked] == ["0xold"]
    assert [t.block_hash for t in fake.credited] == ["0xnew"]


async def test_reorged_transfer_that_never_returns_expires_uncredited(
    env: WorkflowEnvironment,
) -> None:
    gone = transfer(1, 5_000_000)
    fake = FakeChain(outcomes={gone.key: [("reorged", 0)]})
    state = await run_watch(env, fake, 5_000_000, signals=[gone])
    assert state.status == IntentStatus.EXPIRED and fake.credited == []


async def test_partial_then_expiry(env: WorkflowEnvironment) -> None:
    fake = FakeChain()
    state = await run_watch(env, fake, 10_000_000, signals=[transfer(1, 4_000_000)])
    assert state.status == IntentStatus.EXPIRED_PARTIALLY_PAID
    assert state.received_minor == 4_000_000


async def test_two_transfers_overpay(env: WorkflowEnvironment) -> None:
    fake = FakeChain()
    state = await run_watch(
        env, fake, 10_000_000, signals=[transfer(1, 6_000_000), transfer(2, 6_000_000)]
    )
    assert state.status == IntentStatus.OVERPAID and state.received_minor == 12_000_000


async def test_transfer_seen_before_expiry_still_confirms_after_it(
    env: WorkflowEnvironment,
) -> None:
    seen = transfer(1, 3_000_000)
    fake = FakeChain(outcomes={seen.key: [("pending", 30), ("confirmed", 0)]})
    state = await run_watch(
        env,
        fake,
        3_000_000,
        ttl=timedelta(seconds=10),
        signals=[seen],
        config=WatchConfig(block_time_seconds=2),
    )
    assert state.status == IntentStatus.PAID  # 60 s of confirmations outlived a 10 s intent


async def test_fallback_finds_what_the_scanner_missed(env: WorkflowEnvironment) -> None:
    fake = FakeChain(fallback_answers=[[], [transfer(7, 2_000_000)]])
    state = await run_watch(env, fake, 2_000_000)
    assert state.status == IntentStatus.PAID
    assert fake.fallbacks == 2


async def until(handle, predicate, what: str):
    for _ in range(500):
        state = await handle.query(DepositWatch.status)
        if predicate(state):
            return state
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def test_dust_neither_wakes_the_watch_nor_spends_its_checks(
    env: WorkflowEnvironment,
) -> None:
    """50 dust transfers (and a zero) one by one, then the real payment: credited, and the watch
    spent no check on the dust (before the fix each one woke it: 50 checks > max_checks)."""
    real = transfer(99, 5_000_000)
    fake = FakeChain()

    async def dust_then_pay(handle) -> None:
        for n in range(51):
            await handle.signal(DepositWatch.transfer_seen, transfer(n + 1, 0 if n == 0 else 5))
            await handle.query(DepositWatch.status)  # one signal per activation
        await handle.signal(DepositWatch.transfer_seen, real)

    state = await run_watch(
        env,
        fake,
        5_000_000,
        config=WatchConfig(max_checks=20, min_amount_minor=10_000),
        before_result=dust_then_pay,
    )
    assert state.status == IntentStatus.PAID
    assert [t.key for t in fake.credited] == [real.key]
    assert state.ignored == 51 and state.checks <= 3


async def test_zero_value_transfer_is_ignored_even_with_no_minimum(
    env: WorkflowEnvironment,
) -> None:
    real = transfer(2, 1_000_000)
    fake = FakeChain()
    state = await run_watch(
        env, fake, 1_000_000, signals=[transfer(1, 0), real], config=WatchConfig(min_amount_minor=0)
    )
    assert state.status == IntentStatus.PAID
    assert [t.key for t in fake.credited] == [real.key] and state.ignored == 1


async def test_a_failing_credit_parks_the_watch_and_retry_credits(
    env: WorkflowEnvironment,
) -> None:
    seen = transfer(1, 3_000_000)
    fake = FakeChain(credit_failures=1)

    async def retry_when_parked(handle) -> None:
        parked = await until(handle, lambda s: s.needs_attention, "the watch to park")
        assert parked.error and parked.error.startswith("credit failed: UnbalancedEntry")
        described = await handle.describe()
        assert described.typed_search_attributes.get(SETTLE_STATUS) == "needs_attention"
        await handle.signal("retry")

    state = await run_watch(env, fake, 3_000_000, signals=[seen], before_result=retry_when_parked)
    assert state.status == IntentStatus.PAID and not state.needs_attention
    assert [t.key for t in fake.credited] == [seen.key]


async def test_a_refused_close_parks_the_watch_and_retry_closes_it(
    env: WorkflowEnvironment,
) -> None:
    """Closing a paid intent met a constraint: the watch failed with the intent credited and its
    row still open. Now it parks with the reason; retry records the close."""
    seen = transfer(1, 3_000_000)
    fake = FakeChain(close_refusals=1)

    async def retry_when_parked(handle) -> None:
        for _ in range(500):
            described = await handle.describe()
            if described.typed_search_attributes.get(SETTLE_STATUS) == "needs_attention":
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the watch never parked")
        assert fake.closed == [] and [t.key for t in fake.credited] == [seen.key]
        await handle.signal("retry")

    state = await run_watch(env, fake, 3_000_000, signals=[seen], before_result=retry_when_parked)
    assert state.status == IntentStatus.PAID
    assert [c.status for c in fake.closed] == [IntentStatus.PAID]
    assert [t.key for t in fake.credited] == [seen.key]  # credited once


async def test_an_abandoned_credit_is_marked_and_the_watch_goes_on(
    env: WorkflowEnvironment,
) -> None:
    seen = transfer(1, 3_000_000)
    fake = FakeChain(credit_failures=1)

    async def abandon_when_parked(handle) -> None:
        await until(handle, lambda s: s.needs_attention, "the watch to park")
        await handle.signal("abandon", "credited by hand")

    state = await run_watch(env, fake, 3_000_000, signals=[seen], before_result=abandon_when_parked)
    assert state.status == IntentStatus.EXPIRED and fake.credited == []
    assert state.abandoned == [seen.key]
    assert [(m.transfer.key, m.status.value) for m in fake.marked] == [(seen.key, "abandoned")]


async def run_late_credit(
    env: WorkflowEnvironment, fake: FakeChain, seen: TransferSeen, during=None
) -> LateCreditState:
    prefix = new_prefix()
    async with running_workers(
        env.client, prefix, workflows=[LateTransferCredit], activities=fake.activities()
    ):
        intent_id = str(uuid.uuid4())
        handle = await env.client.start_workflow(
            LateTransferCredit.run,
            LateCreditInput(
                intent_id=intent_id,
                tenant="t",
                chain="base",
                chain_id=31337,
                transfer=seen,
                requested_by="ops",
                credit_max_attempts=1,
                task_queue_prefix=prefix,
            ),
            id=f"deposit-late-credit-{intent_id}-{seen.tx_hash}-0",
            task_queue=f"{prefix}workflows",
            search_attributes=start_attributes(OperationKind.DEPOSIT_WATCH, "t", "ops"),
        )
        if during is not None:
            await during(handle)
        return await handle.result()


async def test_late_credit_waits_for_confirmations_then_credits(env: WorkflowEnvironment) -> None:
    seen = transfer(1, 2_000_000)
    fake = FakeChain(outcomes={seen.key: [("pending", 3), ("confirmed", 0)]})
    state = await run_late_credit(env, fake, seen)
    assert state.status == "credited" and fake.checks == 2
    assert [t.key for t in fake.credited] == [seen.key]


async def test_late_credit_of_a_reorged_transfer_credits_nothing(env: WorkflowEnvironment) -> None:
    seen = transfer(1, 2_000_000)
    fake = FakeChain(outcomes={seen.key: [("reorged", 0)]})
    state = await run_late_credit(env, fake, seen)
    assert state.status == "reorged" and fake.credited == []
    assert [m.status.value for m in fake.marked] == ["reorged"]


async def test_late_credit_that_fails_parks_for_retry(env: WorkflowEnvironment) -> None:
    seen = transfer(1, 2_000_000)
    fake = FakeChain(credit_failures=1)

    async def retry(handle) -> None:
        for _ in range(500):
            if (await handle.query(LateTransferCredit.status)).status == "needs_attention":
                break
            await asyncio.sleep(0.02)
        described = await handle.describe()
        assert described.typed_search_attributes.get(SETTLE_STATUS) == "needs_attention"
        await handle.signal("retry")

    state = await run_late_credit(env, fake, seen, during=retry)
    assert state.status == "credited" and [t.key for t in fake.credited] == [seen.key]


# --- recording histories for tests/unit/test_replay.py -------------------------------------------

HISTORIES = Path(__file__).resolve().parents[1] / "histories" / "deposit_watch"


async def _record() -> None:
    """``python -m tests.unit.test_deposit_watch_workflow``: record the histories not yet kept
    (a history, once kept, is never re-recorded)."""
    from tests.fixtures.temporal import start_time_skipping

    async def retry_when_parked(handle) -> None:
        await until(handle, lambda s: s.needs_attention, "the watch to park")
        await handle.signal("retry")

    seen, gone = transfer(1, 5_000_000), transfer(2, 4_000_000, block_hash="0xold")
    scenarios = {
        # the shape before dust and parking (v1)
        "v1_confirmed_paid": (
            5_000_000,
            [seen],
            FakeChain(outcomes={seen.key: [("pending", 3), ("confirmed", 0)]}),
            None,
            None,
        ),
        "v1_reorged_then_expired": (
            4_000_000,
            [gone, transfer(3, 1_000_000)],
            FakeChain(outcomes={gone.key: [("reorged", 0)]}),
            None,
            None,
        ),
        # dust ignored, a failing credit parked then retried (v2)
        "v2_dust_then_paid": (
            5_000_000,
            [transfer(4, 0), transfer(5, 3), seen],
            FakeChain(),
            WatchConfig(min_amount_minor=10_000),
            None,
        ),
        "v2_credit_parked_then_retried": (
            5_000_000,
            [seen],
            FakeChain(credit_failures=1),
            None,
            retry_when_parked,
        ),
        # credits, parkings and the end pushed as events (v3: "deposit-watch-events")
        "v3_events_parked_then_paid": (
            5_000_000,
            [seen],
            FakeChain(credit_failures=1),
            None,
            retry_when_parked,
        ),
        "v3_events_reorged_then_expired": (
            4_000_000,
            [gone, transfer(3, 1_000_000)],
            FakeChain(outcomes={gone.key: [("reorged", 0)]}),
            None,
            None,
        ),
    }
    HISTORIES.mkdir(parents=True, exist_ok=True)
    async with await start_time_skipping() as env:
        for name, (amount, signals, fake, config, during) in scenarios.items():
            path = HISTORIES / f"{name}.json"
            if path.exists():
                print(f"kept {path}")
                continue
            captured: list[WorkflowHistory] = []

            async def keep(handle, captured=captured, during=during) -> None:
                if during is not None:
                    await during(handle)
                await handle.result()
                captured.append(await handle.fetch_history())

            await run_watch(env, fake, amount, signals=signals, config=config, before_result=keep)
            path.write_text(captured[0].to_json())
            print(f"wrote {path}")


if __name__ == "__main__":
    asyncio.run(_record())
