"""Bookkeeping steps run as local activities first (``workflows/bookkeeping.py``), on the
time-skipping server with the verification workflow's stand-in activities: the history shows no
activity task for a job row that was written at once; a row whose local attempts fail is written
by the regular, visible activity; a refusal the database will repeat is not retried and reaches
the workflow as the ActivityError its callers handle."""

from __future__ import annotations

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import WorkflowEnvironment

from domain.verification import JobStatus
from operations.jobs_timeline import LOCAL_ACTIVITY_MARKER, _Reader
from tests.unit.test_verification_workflow import Fakes, creator, database_down, entry, run

RECORD = "verification.record"


@pytest.fixture
def env(time_skipping_env: WorkflowEnvironment) -> WorkflowEnvironment:
    return time_skipping_env


async def scheduled_and_markers(client: Client, job_id: str) -> tuple[list[str], int]:
    """(the activity types the server scheduled, the local-activity markers) of the job's run."""
    history = await client.get_workflow_handle(f"verification-{job_id}").fetch_history()
    scheduled = [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    markers = sum(
        1
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and event.marker_recorded_event_attributes.marker_name == LOCAL_ACTIVITY_MARKER
    )
    return scheduled, markers


async def test_job_rows_are_written_locally_without_an_activity_task(
    env: WorkflowEnvironment,
) -> None:
    fakes = Fakes(env.client, entry=entry(creator()))
    state = await run(env, fakes, job_id="local-rows")
    assert state.status == JobStatus.COMPLETED
    assert [(r.status, r.progress) for r in fakes.records] == [
        (JobStatus.ACTIVE, 0),
        (JobStatus.ACTIVE, 30),
        (JobStatus.COMPLETED, 100),
    ]
    assert fakes.record_calls == [True, True, True]
    scheduled, markers = await scheduled_and_markers(env.client, "local-rows")
    assert RECORD not in scheduled and markers == 3
    # the steps that leave the worker are still regular activities
    assert {"verification.hash_upload", "verification.fetch_manifest"} <= set(scheduled)


async def test_a_row_whose_local_attempts_fail_is_written_by_the_regular_activity(
    env: WorkflowEnvironment,
) -> None:
    """Three local attempts fail (the database is away): the step becomes the regular activity
    on the db queue, which a describe, the jobs API and the Monitor see, and which writes it."""
    fakes = Fakes(
        env.client, entry=entry(creator()), record_errors=[database_down() for _ in range(3)]
    )
    state = await run(env, fakes, job_id="fell-back")
    assert state.status == JobStatus.COMPLETED and state.progress == 100
    assert fakes.record_calls == [True, True, True, False, True, True]
    assert [(r.status, r.progress) for r in fakes.records] == [
        (JobStatus.ACTIVE, 0),
        (JobStatus.ACTIVE, 30),
        (JobStatus.COMPLETED, 100),
    ]
    scheduled, _ = await scheduled_and_markers(env.client, "fell-back")
    assert scheduled.count(RECORD) == 1
    # the job's timeline shows every write: local ones from their markers, the regular one
    handle = env.client.get_workflow_handle("verification-fell-back")
    reader = _Reader(env.client)
    for event in (await handle.fetch_history()).events:
        await reader.read(event)
    writes = [
        (e.type, e.attempt, e.local, e.error_type) for e in reader.entries if e.step == RECORD
    ]
    assert writes == [
        ("activity_failed", 3, True, "ConnectionRefusedError"),
        ("activity_scheduled", None, None, None),
        ("activity_completed", 1, None, None),
        ("activity_completed", 1, True, None),
        ("activity_completed", 1, True, None),
    ]
    assert all(e.duration_ms is not None for e in reader.entries if e.local)


async def test_a_refusal_is_not_retried_and_reaches_the_workflow_as_an_activity_error(
    env: WorkflowEnvironment,
) -> None:
    """A constraint the database enforces: one local attempt (not retried), then the regular
    activity meets it once (not retried either) and raises it as the ActivityError the workflows'
    refusal handling expects, recorded in the history."""

    def refused() -> ApplicationError:
        return ApplicationError("duplicate key value", type="UniqueViolation", non_retryable=True)

    fakes = Fakes(env.client, entry=entry(creator()), record_errors=[refused(), refused()])
    with pytest.raises(WorkflowFailureError) as failed:
        await run(env, fakes, job_id="refused")
    assert isinstance(failed.value.cause, ActivityError)
    assert isinstance(failed.value.cause.cause, ApplicationError)
    assert failed.value.cause.cause.type == "UniqueViolation"
    assert fakes.record_calls == [True, False] and fakes.records == []
    scheduled, _ = await scheduled_and_markers(env.client, "refused")
    assert scheduled == [RECORD]  # the job went no further
