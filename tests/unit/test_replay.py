"""Recorded histories replay against today's workflow code.

A workflow that changes shape without ``workflow.patched`` breaks running executions: this test
fails first. Histories live in ``tests/histories/<workflow>/`` (``python -m tests.histories.record``).

The recorded histories are plain JSON (unencrypted); the replayer has the worker's converter, payload
codec included: payloads without the codec's encoding pass through its decode unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from runtime.codec import EncryptionCodec, with_codec
from runtime.workflow_runner import workflow_runner
from worker import WORKFLOWS

HISTORIES = sorted((Path(__file__).resolve().parents[1] / "histories").glob("*/*.json"))


def test_there_are_histories_to_replay() -> None:
    assert len(HISTORIES) >= 6


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: f"{p.parent.name}/{p.stem}")
async def test_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(f"replay-{path.stem}", path.read_text())
    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=with_codec(EncryptionCodec({"replay": os.urandom(32)}, "replay")),
        workflow_runner=workflow_runner(),
    )
    await replayer.replay_workflow(history)
