"""AnchorBatcher on the time-skipping server with stand-in activities: batches of N or what came
within T seconds; settings sent with later credentials reach the running batcher.

``python -m tests.unit.test_anchor_batcher_workflow`` records the history replayed by
tests/unit/test_replay.py (tests/histories/anchor_batcher/), as a running batcher of today's
shape would look; never re-record an existing file.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from domain.credentials import (
    AnchorSubmitInput,
    BatcherInput,
    BatchMember,
    BatchOutcome,
    PreparedBatch,
)
from domain.events import EmitEventInput
from domain.evm import AwaitTxInput, CancelOutcome, CancelTxInput, SubmittedTx, TxReceipt
from domain.queues import ActivityQueue
from tests.fixtures.temporal import EMITTED, new_prefix, running_workers, start_time_skipping
from workflows.anchor_batcher import AnchorBatcher

REGISTRY_A = "0x663F3ad617193148711d28f5334eE4Ed07016602"
REGISTRY_B = "0x057ef64E23666F000b34aE31332854aCBd1c8544"
HISTORIES = Path(__file__).resolve().parents[1] / "histories" / "anchor_batcher"


@dataclass
class FakeChain:
    prepared: list[list[str]] = field(default_factory=list)
    submitted: list[AnchorSubmitInput] = field(default_factory=list)
    recorded: list[BatchOutcome] = field(default_factory=list)
    #: when set, every submit fails with this error type and ``evm.cancel`` answers ``cancel_outcome``
    submit_error: str | None = None
    cancel_outcome: str = "cancelled"
    cancelled: list[str] = field(default_factory=list)

    def activities(self) -> dict[ActivityQueue, list[Any]]:
        fake = self

        @activity.defn(name="credentials.prepare_batch")
        async def prepare_batch(keys: list[str]) -> PreparedBatch:
            fake.prepared.append(keys)
            root = "0x" + f"{len(fake.prepared):064x}"
            return PreparedBatch(root=root, calldata="0xfeed", keys=keys)

        @activity.defn(name="credentials.submit_anchor")
        async def submit_anchor(request: AnchorSubmitInput) -> SubmittedTx:
            fake.submitted.append(request)
            if fake.submit_error:
                raise ApplicationError("on purpose", type=fake.submit_error, non_retryable=True)
            return SubmittedTx(
                idempotency_key=request.idempotency_key, tx_hash="0x" + "ab" * 32, nonce=1
            )

        @activity.defn(name="evm.await_confirmations")
        async def await_confirmations(request: AwaitTxInput) -> TxReceipt:
            return TxReceipt(
                idempotency_key=request.idempotency_key,
                tx_hash="0x" + "ab" * 32,
                nonce=1,
                block_number=7,
                block_hash="0x" + "cd" * 32,
                confirmations=request.confirmations,
            )

        @activity.defn(name="evm.cancel")
        async def cancel(request: CancelTxInput) -> CancelOutcome:
            fake.cancelled.append(request.idempotency_key)
            landed = fake.cancel_outcome == "landed"
            receipt = TxReceipt(
                idempotency_key=request.idempotency_key,
                tx_hash="0x" + "ef" * 32,
                nonce=1,
                block_number=9,
                block_hash="0x" + "cd" * 32,
                confirmations=request.confirmations,
            )
            return CancelOutcome(
                idempotency_key=request.idempotency_key,
                outcome=fake.cancel_outcome,
                nonce=1,
                tx_hash=receipt.tx_hash,
                receipt=receipt if landed else None,
            )

        @activity.defn(name="credentials.record_batch")
        async def record_batch(outcome: BatchOutcome) -> None:
            fake.recorded.append(outcome)

        @activity.defn(name="credentials.batch_members")
        async def batch_members(keys: list[str]) -> list[BatchMember]:
            return [
                BatchMember(credential_key=key, credential_id=f"cred-{key[-1]}", tenant="t-batch")
                for key in keys
            ]

        return {
            ActivityQueue.DB: [prepare_batch, record_batch, batch_members],
            ActivityQueue.CREDENTIALS: [submit_anchor],
            ActivityQueue.EVM_WRITE: [await_confirmations, cancel],
        }


def batcher_input(prefix: str, registry: str = REGISTRY_A, max_size: int = 3) -> BatcherInput:
    return BatcherInput(
        registry=registry, max_size=max_size, max_wait_seconds=5.0, task_queue_prefix=prefix
    )


def emitted(prefix: str) -> list[EmitEventInput]:
    return [e for e in EMITTED if e.task_queue_prefix == prefix]


async def until(condition: Any, what: str) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def two_batches(client: Client, fake: FakeChain, prefix: str) -> WorkflowHandle[Any, Any]:
    """Five credentials for batches of three: one full batch at once, the rest after the wait."""
    handle = await client.start_workflow(
        AnchorBatcher.run,
        batcher_input(prefix),
        id=f"anchor-batcher-{uuid.uuid4().hex[:8]}",
        task_queue=f"{prefix}workflows",
        start_signal="add_many",
        start_signal_args=[[f"0x{i:064x}" for i in range(5)]],
    )
    await until(lambda: len(fake.recorded) == 2, "two batches")
    return handle


@pytest.fixture
def env(time_skipping_env: WorkflowEnvironment) -> WorkflowEnvironment:
    return time_skipping_env


async def test_batches_of_n_then_what_came_within_t(env: WorkflowEnvironment) -> None:
    fake, prefix = FakeChain(), new_prefix()
    async with running_workers(
        env.client, prefix, workflows=[AnchorBatcher], activities=fake.activities()
    ):
        handle = await two_batches(env.client, fake, prefix)
        await until(lambda: len(emitted(prefix)) == 5, "an event per credential")
        await handle.terminate("test over")
    assert [len(keys) for keys in fake.prepared] == [3, 2]
    assert {s.registry for s in fake.submitted} == {REGISTRY_A}
    assert [o.status for o in fake.recorded] == ["confirmed", "confirmed"]
    # a batched credential pushes credential.confirmed like a single anchor, to its own tenant
    events = emitted(prefix)
    assert {e.key for e in events} == {f"credential.confirmed:0x{i:064x}" for i in range(5)}
    assert {e.tenant for e in events} == {"t-batch"}
    roots = {o.root for o in fake.recorded}
    assert {e.data["batch_root"] for e in events} == roots
    assert all(
        e.data["tx_hash"] == "0x" + "ab" * 32 and e.data["status"] == "confirmed" for e in events
    )


async def test_settings_sent_with_later_credentials_reach_the_running_batcher(
    env: WorkflowEnvironment,
) -> None:
    """The settings passed at signal-with-start used to be fixed for the batcher's life (and
    carried through continue-as-new): a new registry address or batch size never applied."""
    fake, prefix = FakeChain(), new_prefix()
    async with running_workers(
        env.client, prefix, workflows=[AnchorBatcher], activities=fake.activities()
    ):
        handle = await two_batches(env.client, fake, prefix)
        changed = batcher_input(prefix, registry=REGISTRY_B, max_size=2)
        await env.client.start_workflow(
            AnchorBatcher.run,
            changed,
            id=handle.id,
            task_queue=f"{prefix}workflows",
            start_signal="add_with_settings",
            start_signal_args=[[f"0x{i:064x}" for i in range(10, 14)], changed],
        )
        await until(lambda: len(fake.recorded) == 4, "two more batches")
        await handle.terminate("test over")
    assert [len(keys) for keys in fake.prepared] == [3, 2, 2, 2]
    assert [s.registry for s in fake.submitted] == [REGISTRY_A, REGISTRY_A, REGISTRY_B, REGISTRY_B]


@pytest.mark.parametrize(
    ("cancel_outcome", "status"), [("cancelled", "failed"), ("landed", "confirmed")]
)
async def test_a_failed_batch_is_reported_only_once_its_transaction_is_settled(
    env: WorkflowEnvironment, cancel_outcome: str, status: str
) -> None:
    fake, prefix = (
        FakeChain(submit_error="EvmUnavailable", cancel_outcome=cancel_outcome),
        new_prefix(),
    )
    async with running_workers(
        env.client, prefix, workflows=[AnchorBatcher], activities=fake.activities()
    ):
        handle = await two_batches(env.client, fake, prefix)
        await until(lambda: len(emitted(prefix)) == 5, "an event per credential")
        await handle.terminate("test over")
    assert fake.cancelled == [f"credential-batch:{o.root}" for o in fake.recorded]
    assert [o.status for o in fake.recorded] == [status, status]
    # failed: an event per credential and batch (it may be batched again); landed: confirmed
    kinds = {e.event_type for e in emitted(prefix)}
    assert kinds == {f"credential.{status}"}
    if status == "failed":
        tags = {f"batch-{o.root[2:18]}" for o in fake.recorded}
        assert {e.key.rsplit(":", 1)[1] for e in emitted(prefix)} == tags


async def _record() -> None:
    env = await start_time_skipping()
    async with env:
        fake, prefix = FakeChain(), new_prefix()
        async with running_workers(
            env.client, prefix, workflows=[AnchorBatcher], activities=fake.activities()
        ):
            handle = await two_batches(env.client, fake, prefix)
            history = await handle.fetch_history()
            await handle.terminate("recorded")
    HISTORIES.mkdir(parents=True, exist_ok=True)
    path = HISTORIES / "v1_two_batches.json"
    if path.exists():
        sys.exit(f"{path} exists: histories are never re-recorded")
    path.write_text(history.to_json())
    print(f"wrote {path}")


if __name__ == "__main__":
    asyncio.run(_record())
