"""PayoutBatcher on the time-skipping server with stand-in activities and stand-in deposits: what
arrives within the wait goes out as one Disperse transaction after one approval, and each deposit
is told its own log; a failed batch is settled (``evm.cancel``) before anyone is told to send
alone, and one found mined after all counts as paid; a lone payout is sent alone at once."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from domain.evm import (
    AwaitTxInput,
    CancelOutcome,
    CancelTxInput,
    SubmittedTx,
    SubmitTxInput,
    TxReceipt,
)
from domain.mpesa import RaiseAlertInput
from domain.payouts import (
    ANSWER_SIGNAL,
    DISPERSE_SELECTOR,
    BatchTransfer,
    BatchTransfersInput,
    PayoutAnswer,
    PayoutBatchConfig,
    PayoutBatcherInput,
    PayoutMember,
    approve_key,
    batch_key,
)
from domain.queues import ActivityQueue
from tests.fixtures.temporal import new_prefix, running_workers, start_time_skipping
from workflows.payout_batcher import PayoutBatcher

USDC = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
DISPERSE = "0xef11D1c2aA48826D4c41e54ab82D1Ff5Ad8A64Ca"
MINED = "0x" + "ab" * 32


@workflow.defn(name="AnswerSink")
class AnswerSink:
    """Stands in for a deposit: waits for the batcher's answer and returns it."""

    def __init__(self) -> None:
        self._answer: PayoutAnswer | None = None

    @workflow.signal(name=ANSWER_SIGNAL)
    def answer(self, answer: PayoutAnswer) -> None:
        self._answer = answer

    @workflow.run
    async def run(self) -> PayoutAnswer:
        await workflow.wait_condition(lambda: self._answer is not None)
        assert self._answer is not None
        return self._answer


@dataclass
class FakeWriter:
    submit_error: str | None = None
    cancel_outcome: str = "cancelled"
    submitted: list[SubmitTxInput] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    members: list[PayoutMember] = field(default_factory=list)
    alerts: list[RaiseAlertInput] = field(default_factory=list)

    def activities(self) -> dict[ActivityQueue, list[Any]]:
        fake = self

        def receipt(key: str, tx_hash: str = MINED) -> TxReceipt:
            return TxReceipt(
                idempotency_key=key,
                tx_hash=tx_hash,
                nonce=1,
                block_number=7,
                block_hash="0x" + "cd" * 32,
                confirmations=2,
            )

        @activity.defn(name="evm.submit")
        async def submit(request: SubmitTxInput) -> SubmittedTx:
            fake.submitted.append(request)
            if fake.submit_error and request.data.startswith(DISPERSE_SELECTOR):
                raise ApplicationError("on purpose", type=fake.submit_error, non_retryable=True)
            return SubmittedTx(idempotency_key=request.idempotency_key, tx_hash=MINED, nonce=1)

        @activity.defn(name="evm.await_confirmations")
        async def await_confirmations(request: AwaitTxInput) -> TxReceipt:
            return receipt(request.idempotency_key)

        @activity.defn(name="evm.cancel")
        async def cancel(request: CancelTxInput) -> CancelOutcome:
            fake.cancelled.append(request.idempotency_key)
            landed = fake.cancel_outcome == "landed"
            return CancelOutcome(
                idempotency_key=request.idempotency_key,
                outcome=fake.cancel_outcome,
                receipt=receipt(request.idempotency_key) if landed else None,
            )

        @activity.defn(name="payouts.batch_transfers")
        async def batch_transfers(request: BatchTransfersInput) -> list[BatchTransfer]:
            return [
                BatchTransfer(recipient=m.recipient, amount_minor=m.amount_minor, log_index=i)
                for i, m in enumerate(fake.members)
            ]

        @activity.defn(name="deposits.raise_alert")
        async def raise_alert(request: RaiseAlertInput) -> str:
            fake.alerts.append(request)
            return "alert-1"

        return {
            ActivityQueue.EVM_WRITE: [submit, await_confirmations, cancel, batch_transfers],
            ActivityQueue.DB: [raise_alert],
        }


def config() -> PayoutBatchConfig:
    return PayoutBatchConfig(
        disperse_address=DISPERSE, usdc_address=USDC, max_size=10, max_wait_seconds=1.0
    )


async def pay(
    client: Client, fake: FakeWriter, prefix: str, count: int, history: list[Any] | None = None
) -> list[PayoutAnswer]:
    """``count`` stand-in deposits join one batcher; their answers."""
    queue = f"{prefix}workflows"
    sinks: list[WorkflowHandle[Any, PayoutAnswer]] = []
    batcher_id = f"payout-batcher-{uuid.uuid4().hex[:8]}"
    for i in range(count):
        sink = await client.start_workflow(
            AnswerSink.run, id=f"sink-{uuid.uuid4().hex[:8]}", task_queue=queue
        )
        sinks.append(sink)
        member = PayoutMember(
            deposit_id=f"d{i}",
            workflow_id=sink.id,
            recipient="0x" + f"{i + 1:040x}",
            amount_minor=1_000_000 + i,
            key=f"mpesa-deposit:d{i}:usdc:1",
        )
        fake.members.append(member)
        await client.start_workflow(
            PayoutBatcher.run,
            PayoutBatcherInput(config=config(), task_queue_prefix=prefix),
            id=batcher_id,
            task_queue=queue,
            start_signal="add_with_settings",
            start_signal_args=[member, config()],
        )
    # real time: skipping time while waiting on a result would expire the sinks' workflow tasks
    answers = await asyncio.gather(*(s.result() for s in sinks))
    batcher = client.get_workflow_handle(batcher_id)
    if history is not None:
        history.append(await batcher.fetch_history())
    await batcher.terminate("test over")
    return list(answers)


@pytest.fixture
def env(time_skipping_env: WorkflowEnvironment) -> Iterator[WorkflowEnvironment]:
    with time_skipping_env.auto_time_skipping_disabled():
        yield time_skipping_env


async def test_one_transaction_after_one_approval_each_told_its_log(
    env: WorkflowEnvironment,
) -> None:
    fake, prefix = FakeWriter(), new_prefix()
    async with running_workers(
        env.client, prefix, workflows=[PayoutBatcher, AnswerSink], activities=fake.activities()
    ):
        answers = await pay(env.client, fake, prefix, 3)
    assert [s.idempotency_key for s in fake.submitted] == [
        approve_key(DISPERSE),
        batch_key(fake.members),
    ]
    assert fake.submitted[1].to == DISPERSE and fake.submitted[1].data.startswith(DISPERSE_SELECTOR)
    assert [(a.paid, a.tx_hash, a.log_index, a.batch_size) for a in answers] == [
        (True, MINED, 0, 3),
        (True, MINED, 1, 3),
        (True, MINED, 2, 3),
    ]
    assert not fake.cancelled


@pytest.mark.parametrize(("cancel_outcome", "paid"), [("never_submitted", False), ("landed", True)])
async def test_a_failed_batch_is_settled_before_anyone_sends_alone(
    env: WorkflowEnvironment, cancel_outcome: str, paid: bool
) -> None:
    fake, prefix = (
        FakeWriter(submit_error="EvmReverted", cancel_outcome=cancel_outcome),
        new_prefix(),
    )
    async with running_workers(
        env.client, prefix, workflows=[PayoutBatcher, AnswerSink], activities=fake.activities()
    ):
        answers = await pay(env.client, fake, prefix, 2)
    assert fake.cancelled == [batch_key(fake.members)]
    assert [a.paid for a in answers] == [paid, paid]
    if not paid:
        assert all("EvmReverted" in (a.error or "") for a in answers)
        assert [(a.condition, a.reference) for a in fake.alerts] == [
            ("payout_batch_failed", batch_key(fake.members))
        ]
    else:
        assert not fake.alerts


async def test_a_lone_payout_is_sent_alone(env: WorkflowEnvironment) -> None:
    fake, prefix = FakeWriter(), new_prefix()
    async with running_workers(
        env.client, prefix, workflows=[PayoutBatcher, AnswerSink], activities=fake.activities()
    ):
        (answer,) = await pay(env.client, fake, prefix, 1)
    assert (answer.paid, answer.error) == (False, "alone")
    assert not fake.submitted


async def _record() -> None:
    # the stand-in deposit must come from an importable module, not __main__ (workflow sandbox)
    from tests.unit import test_payout_batcher_workflow as module

    env = await start_time_skipping()
    async with env:
        fake, prefix = FakeWriter(), new_prefix()
        history: list[Any] = []
        with env.auto_time_skipping_disabled():
            async with running_workers(
                env.client,
                prefix,
                workflows=[PayoutBatcher, module.AnswerSink],
                activities=fake.activities(),
            ):
                await module.pay(env.client, fake, prefix, 3, history)
    # computed here: the module is imported inside the workflow sandbox, which refuses resolve()
    histories = Path(__file__).resolve().parents[1] / "histories" / "payout_batcher"
    histories.mkdir(parents=True, exist_ok=True)
    path = histories / "v1_one_batch.json"
    if path.exists():
        sys.exit(f"{path} exists: histories are never re-recorded")
    path.write_text(history[0].to_json())
    print(f"wrote {path}")


if __name__ == "__main__":
    asyncio.run(_record())
