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

from domain.credentials import AnchorConfig, AnchorInput, AnchorOutcome, AnchorSubmitInput
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
    env: WorkflowEnvironment, fake: FakeChain, during=None, keep: list | None = None
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


if __name__ == "__main__":

    async def _record() -> None:
        from tests.fixtures.temporal import start_time_skipping

        scenarios = {
            "v1_confirmed": FakeChain(),
            "v1_submit_failed": FakeChain(submit_errors=["EvmRejected"]),
        }
        HISTORIES.mkdir(parents=True, exist_ok=True)
        async with await start_time_skipping() as env:
            for name, fake in scenarios.items():
                path = HISTORIES / f"{name}.json"
                if path.exists():
                    print(f"kept {path}")
                    continue
                kept: list[WorkflowHistory] = []
                await run_anchor(env, fake, keep=kept)
                path.write_text(kept[0].to_json())
                print(f"wrote {path}")

    asyncio.run(_record())
