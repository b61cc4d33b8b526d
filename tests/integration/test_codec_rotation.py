"""Key rotation: a workflow started under the old key is picked up by a fresh worker whose codec
encrypts with a new key and keeps the old one for decryption; it replays and completes."""

from __future__ import annotations

import asyncio
import os
from types import SimpleNamespace

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from domain.mpesa import DepositStatus, MpesaDepositState
from runtime.codec import ENCODING, KEY_ID, EncryptionCodec, with_codec
from runtime.workflow_runner import workflow_runner
from tests.fixtures.temporal import new_prefix, running_workers
from tests.integration.test_dead_letter_cli import start_parked
from tests.unit.test_mpesa_deposit_workflow import FakeMpesa
from worker import WORKFLOWS
from workflows.mpesa_deposit import MpesaDeposit


def client_with(base: Client, codec: EncryptionCodec) -> Client:
    config = base.config()
    config["data_converter"] = with_codec(codec)
    return Client(**config)


async def test_after_rotation_an_old_workflow_replays_and_completes(
    dev_env: WorkflowEnvironment,
) -> None:
    old_key, new_key = os.urandom(32), os.urandom(32)
    before = client_with(dev_env.client, EncryptionCodec({"2026-a": old_key}, "2026-a"))
    after = client_with(
        dev_env.client, EncryptionCodec({"2026-a": old_key, "2026-b": new_key}, "2026-b")
    )
    fake = FakeMpesa(credit_failures=2)
    fake.client = before  # Transaction Status results are signalled with it
    prefix = new_prefix()
    async with running_workers(
        before, prefix, workflows=[MpesaDeposit], activities=fake.activities()
    ):
        handle, _ = await start_parked(SimpleNamespace(client=before), fake, prefix)  # type: ignore[arg-type]

    # the old worker is gone; a new one (empty cache: it replays the history) has the new keys
    async with running_workers(
        after, prefix, workflows=[MpesaDeposit], activities=fake.activities()
    ):
        rotated = after.get_workflow_handle(handle.id, result_type=MpesaDepositState)
        await rotated.signal(MpesaDeposit.retry)
        state = await asyncio.wait_for(rotated.result(), 60)
    assert state.status == DepositStatus.CREDITED

    history = await rotated.fetch_history()
    raw = b"".join(e.SerializeToString() for e in history.events)
    assert raw.count(ENCODING) >= 4
    assert b"2026-a" in raw and b"2026-b" in raw  # written under both keys
    assert KEY_ID.encode() in raw and b"254708374149" not in raw
    # and the whole history replays with the rotated keys
    replayer = Replayer(
        workflows=WORKFLOWS, data_converter=after.data_converter, workflow_runner=workflow_runner()
    )
    await replayer.replay_workflow(history)
