"""CredentialAnchor on the time-skipping server with stand-in activities: a failed anchor's
transaction is cancelled (or followed when it landed) before the failure is reported, and a failed
anchor parks for ``retry`` (a new transaction under a new key) or ``abandon``.

``python -m tests.unit.test_credential_anchor_workflow`` records the histories replayed by
tests/unit/test_replay.py (tests/histories/credential_anchor/); an existing file is never
re-recorded.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowHandle, WorkflowHistory
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from domain.credentials import (
    AnchorConfig,
    AnchorInput,
    AnchorOutcome,
    AnchorSubmitInput,
    anchor_tx_key,
)
from domain.evm import AwaitTxInput, CancelOutcome, CancelTxInput, SubmittedTx, TxReceipt
from domain.queues import ActivityQueue
from domain.search import SETTLE_STATUS, OperationKind, start_attributes
from tests.fixtures.temporal import new_prefix, running_workers
from workflows.credentials import CredentialAnchor

HISTORIES = Path(__file__).resolve().parents[1] / "histories" / "credential_anchor"
KEY = "0x" + "11" * 32


@dataclass
class FakeChain:
    #: per submit call, in order: None succeeds, else the error type it fails with (permanently)
    submit_errors: list[str | None] = field(default_factory=list)
    #: the cancel's outcome for a key
    cancel_outcome: str = "cancelled"
    submitted: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    recorded: list[AnchorOutcome] = field(default_factory=list)
    #: per record call, in order: None records, else the database refuses it (non-retryable)
    record_errors: list[str | None] = field(default_factory=list)

    def activities(self) -> dict[ActivityQueue, list[Any]]:
        fake = self

        @activity.defn(name="credentials.submit_anchor")
        async def submit_anchor(request: AnchorSubmitInput) -> SubmittedTx:
            fake.submitted.append(request.idempotency_key)
            error = fake.submit_errors.pop(0) if fake.submit_errors else None
            if error is not None:
                raise ApplicationError(f"{error} on purpose", type=error, non_retryable=True)
            return SubmittedTx(
                idempotency_key=request.idempotency_key, tx_hash=_hash(request), nonce=7
            )

        @activity.defn(name="evm.await_confirmations")
        async def await_confirmations(request: AwaitTxInput) -> TxReceipt:
            return _receipt(request.idempotency_key)

        @activity.defn(name="evm.cancel")
        async def cancel(request: CancelTxInput) -> CancelOutcome:
            fake.cancelled.append(request.idempotency_key)
            landed = fake.cancel_outcome == "landed"
            return CancelOutcome(
                idempotency_key=request.idempotency_key,
                outcome=fake.cancel_outcome,
                nonce=7,
                tx_hash="0x" + "cc" * 32,
                receipt=_receipt(request.idempotency_key) if landed else None,
            )

        @activity.defn(name="credentials.record")
        async def record(outcome: AnchorOutcome) -> None:
            error = fake.record_errors.pop(0) if fake.record_errors else None
            if error is not None:
                raise ApplicationError(
                    f'{error}: duplicate key value violates unique constraint "uq_clash"',
                    type=error,
                    non_retryable=True,
                )
            fake.recorded.append(outcome)

        return {
            ActivityQueue.CREDENTIALS: [submit_anchor],
            ActivityQueue.EVM_WRITE: [await_confirmations, cancel],
            ActivityQueue.DB: [record],
        }


def _hash(request: AnchorSubmitInput) -> str:
    return "0x" + "ab" * 32


def _receipt(key: str) -> TxReceipt:
    return TxReceipt(
        idempotency_key=key,
        tx_hash="0x" + "ab" * 32,
        nonce=7,
        block_number=42,
        block_hash="0x" + "42" * 32,
        confirmations=2,
    )


@pytest.fixture
def env(time_skipping_env: WorkflowEnvironment) -> WorkflowEnvironment:
    return time_skipping_env


async def run_anchor(
    env: WorkflowEnvironment,
    fake: FakeChain,
    during=None,
    keep: list | None = None,
    attempt: int = 1,
) -> AnchorOutcome:
    prefix = new_prefix()
    async with running_workers(
        env.client, prefix, workflows=[CredentialAnchor], activities=fake.activities()
    ):
        handle = await env.client.start_workflow(
            CredentialAnchor.run,
            AnchorInput(
                credential_id="c-1",
                credential_key=KEY,
                tenant="t",
                data_hash="0x" + "ee" * 32,
                ipfs_cid="QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
                registry="0x663F3ad617193148711d28f5334eE4Ed07016602",
                calldata="0xfeed",
                config=AnchorConfig(max_attempts=1, retry_initial_seconds=1),
                task_queue_prefix=prefix,
                attempt=attempt,
            ),
            id=f"credential-anchor-{uuid.uuid4()}",
            task_queue=f"{prefix}workflows",
            search_attributes=start_attributes(OperationKind.CREDENTIAL_ANCHOR, "t", "s"),
        )
        if during is not None:
            await during(handle)
        result = await handle.result()
        if keep is not None:
            keep.append(await handle.fetch_history())
        return result


async def until_parked(handle: WorkflowHandle) -> None:
    for _ in range(500):
        described = await handle.describe()
        if described.typed_search_attributes.get(SETTLE_STATUS) == "needs_attention":
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the anchor never parked")


K1, K2 = anchor_tx_key(KEY, 1), anchor_tx_key(KEY, 2)


async def test_a_failed_anchor_cancels_its_transaction_parks_and_retry_sends_a_new_one(
    env: WorkflowEnvironment,
) -> None:
    fake = FakeChain(submit_errors=["EvmUnavailable"])

    async def retry(handle: WorkflowHandle) -> None:
        await until_parked(handle)
        state = await handle.query(CredentialAnchor.status)
        assert state is not None and state.status == "failed"
        assert "EvmUnavailable" in (state.error or "")
        await handle.signal("retry")

    outcome = await run_anchor(env, fake, during=retry)
    assert outcome.status == "confirmed" and outcome.block_number == 42
    assert fake.submitted == [K1, K2] and fake.cancelled == [K1]
    assert [r.status.value for r in fake.recorded] == ["failed", "pending", "confirmed"]
    assert f"credential:{KEY}" == K1  # the first attempt keeps the key anchors always had


async def test_a_failed_anchor_whose_transaction_landed_is_confirmed(
    env: WorkflowEnvironment,
) -> None:
    fake = FakeChain(submit_errors=["EvmUnavailable"], cancel_outcome="landed")
    outcome = await run_anchor(env, fake)
    assert outcome.status == "confirmed" and outcome.tx_hash == "0x" + "ab" * 32
    assert fake.cancelled == [K1] and [r.status.value for r in fake.recorded] == ["confirmed"]


async def test_a_refused_record_parks_and_retry_records_the_confirmed_anchor(
    env: WorkflowEnvironment,
) -> None:
    """Recording a confirmed anchor met a constraint: the workflow failed, its row said pending
    while the registry held the anchor. Now it parks with the reason; retry records it."""
    fake = FakeChain(record_errors=["UniqueViolation"])
    reasons: list[str] = []

    async def retry(handle: WorkflowHandle) -> None:
        await until_parked(handle)
        described = await handle.describe()
        assert described.status is not None and described.status.name == "RUNNING"
        reasons.append(str(described.typed_search_attributes.get(SETTLE_STATUS)))
        await handle.signal("retry")

    outcome = await run_anchor(env, fake, during=retry)
    assert reasons == ["needs_attention"]
    assert outcome.status == "confirmed"
    assert fake.submitted == [K1]  # one transaction: the retry only records
    assert [r.status.value for r in fake.recorded] == ["confirmed"]


async def test_an_abandoned_anchor_stays_failed(env: WorkflowEnvironment) -> None:
    fake = FakeChain(submit_errors=["EvmReverted"])

    async def abandon(handle: WorkflowHandle) -> None:
        await until_parked(handle)
        await handle.signal("abandon", "anchored by hand")

    outcome = await run_anchor(env, fake, during=abandon)
    assert outcome.status == "failed"
    assert (outcome.error or "").startswith("abandoned: anchored by hand")
    assert fake.submitted == [K1]


async def test_a_new_run_after_an_old_failure_settles_the_old_transaction_first(
    env: WorkflowEnvironment,
) -> None:
    fake = FakeChain()
    outcome = await run_anchor(env, fake, attempt=2)
    assert outcome.status == "confirmed"
    assert fake.cancelled == [K1] and fake.submitted == [K2]


if __name__ == "__main__":

    async def _record() -> None:
        from tests.fixtures.temporal import start_time_skipping

        scenarios = {
            "v1_confirmed": FakeChain(),
            "v1_submit_failed": FakeChain(submit_errors=["EvmRejected"]),
            "v2_failed_cancelled_then_retried": FakeChain(submit_errors=["EvmUnavailable"]),
            # v3: outcomes and the parking pushed as events ("credential-anchor-events")
            "v3_events_failed_then_retried": FakeChain(submit_errors=["EvmUnavailable"]),
        }

        async def retry(handle: WorkflowHandle) -> None:
            await until_parked(handle)
            await handle.signal("retry")

        HISTORIES.mkdir(parents=True, exist_ok=True)
        async with await start_time_skipping() as env:
            for name, fake in scenarios.items():
                path = HISTORIES / f"{name}.json"
                if path.exists():
                    print(f"kept {path}")
                    continue
                kept: list[WorkflowHistory] = []
                during = retry if "failed" in name and "retried" in name else None
                await run_anchor(env, fake, during=during, keep=kept)
                path.write_text(kept[0].to_json())
                print(f"wrote {path}")

    asyncio.run(_record())
