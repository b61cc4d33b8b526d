"""Retention (issue 15 §6): the ``Cleanup`` workflow exports old finished rows to JSON lines and
deletes them, leaving open and young rows, the ledger, deposits and anchors alone; Settle's
schedules are listed, paused, resumed and triggered through the API by ``platform_admin`` only;
the namespace's retention is what ``TEMPORAL_RETENTION_DAYS`` says.

Real dev server, real PostgreSQL (the stack); rows are written directly, backdated.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from domain.cleanup import CleanupInput, CleanupResult
from domain.queues import workflow_queue
from runtime.schedules import SCHEDULES, ensure_schedules
from runtime.temporal import namespace_retention, set_retention
from store import cleanup as cleanup_store
from store.models import (
    Alert,
    Base,
    CredentialAnchorRecord,
    LedgerEntry,
    MpesaDeposit,
    Notification,
    User,
    VerificationJob,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from tests.fixtures.stack import Stack, eventually

OLD = datetime.now(UTC) - timedelta(days=120)
YOUNG = datetime.now(UTC) - timedelta(days=2)


def _job(status: str, finished: datetime | None, created: datetime = OLD) -> VerificationJob:
    job_id = uuid.uuid4().hex
    return VerificationJob(
        id=job_id,
        tenant="t-cleanup",
        owner="someone",
        kind="verify",
        status=status,
        registry_address="0x" + "11" * 20,
        manifest_uri="ipfs://bafy",
        file_name="doc.pdf",
        file_size=10,
        workflow_id=f"verification-{job_id}",
        created_at=created,
        completed_at=finished,
    )


def _notification(channel: str, status: str, at: datetime) -> Notification:
    return Notification(
        id=f"cleanup-{uuid.uuid4()}",
        channel=channel,
        target="ops@settle.test" if channel == "email" else "https://hooks.test/x",
        kind="ticket.purchased",
        status=status,
        created_at=at,
        updated_at=at,
    )


def _alert(status: str, at: datetime) -> Alert:
    return Alert(
        condition="cleanup_test",
        severity="warning",
        message="m",
        value="1",
        threshold="0",
        status=status,
        raised_at=at,
        cleared_at=at if status == "cleared" else None,
    )


async def _add(stack: Stack, rows: list[Base]) -> None:
    async with stack.sessions.begin() as session:
        session.add_all(rows)


async def _present(stack: Stack, model: type[Base], ids: list[Any]) -> set[Any]:
    key = model.__mapper__.primary_key[0]
    async with stack.sessions() as session:
        return set((await session.execute(select(key).where(key.in_(ids)))).scalars())


def _key(row: Base) -> Any:
    return getattr(row, str(row.__mapper__.primary_key[0].key))


def _exported(files: list[str]) -> dict[str, dict[str, Any]]:
    lines = [json.loads(line) for f in files for line in Path(f).read_text().splitlines()]
    return {row["id"]: row for row in lines}


async def test_old_finished_rows_are_exported_then_deleted(stack: Stack) -> None:
    gone_jobs = [_job("completed", OLD), _job("failed", OLD + timedelta(hours=1))]
    kept_jobs = [_job("active", None), _job("queued", None), _job("completed", YOUNG)]
    gone_notes = [_notification("email", "sent", OLD), _notification("webhook", "failed", OLD)]
    gone_notes.append(_notification("webhook", "skipped", OLD))
    kept_notes = [_notification("webhook", "pending", OLD), _notification("email", "sent", YOUNG)]
    gone_alerts = [_alert("cleared", OLD)]
    kept_alerts = [_alert("open", OLD), _alert("cleared", YOUNG)]
    user = User(tenant="t-cleanup", subject=f"u-{uuid.uuid4().hex[:8]}", created_at=OLD)
    await _add(stack, [user])
    entry = LedgerEntry(idempotency_key=f"cleanup:{uuid.uuid4()}", kind="test", created_at=OLD)
    deposit = MpesaDeposit(
        tenant="t-cleanup",
        user_id=user.id,
        phone="254700000000",
        amount_minor=100,
        status="completed",
        workflow_id=f"mpesa-deposit-cleanup-{uuid.uuid4()}",
        created_at=OLD,
        updated_at=OLD,
    )
    anchor = CredentialAnchorRecord(
        credential_key="0x" + uuid.uuid4().hex * 2,
        credential_id="c1",
        tenant="t-cleanup",
        requested_by="someone",
        data_hash="0x" + "22" * 32,
        ipfs_cid="bafy",
        status="confirmed",
        workflow_id="credential-c1",
        created_at=OLD,
        updated_at=OLD,
    )
    await _add(
        stack,
        [
            *gone_jobs,
            *kept_jobs,
            *gone_notes,
            *kept_notes,
            *gone_alerts,
            *kept_alerts,
            entry,
            deposit,
            anchor,
        ],
    )
    # a finished job's leftover upload goes with its row; an open job's stays
    uploads = Path(stack.settings.verification_upload_dir)
    (uploads / f"{gone_jobs[0].id}.upload").write_bytes(b"x")
    (uploads / f"{kept_jobs[0].id}.upload").write_bytes(b"x")

    result = await stack.temporal.execute_workflow(
        "Cleanup",
        # batches of 2: several batches per table, each its own transaction
        CleanupInput(
            task_queue_prefix=stack.settings.task_queue_prefix, row_retention_days=90, batch_size=2
        ),
        id=f"cleanup-test-{uuid.uuid4()}",
        task_queue=workflow_queue(stack.settings.task_queue_prefix),
        result_type=CleanupResult,
    )

    for model, gone, kept in (
        (VerificationJob, gone_jobs, kept_jobs),
        (Notification, gone_notes, kept_notes),
        (Alert, gone_alerts, kept_alerts),
    ):
        assert await _present(stack, model, [_key(r) for r in gone]) == set(), model
        assert await _present(stack, model, [_key(r) for r in kept]) == {_key(r) for r in kept}
    assert result.deleted["verification_jobs"] >= 2 and result.deleted["notifications"] >= 3
    assert result.deleted["alerts"] >= 1
    # never deleted, however old
    assert await _present(stack, LedgerEntry, [entry.id]) == {entry.id}
    assert await _present(stack, MpesaDeposit, [deposit.id]) == {deposit.id}
    assert await _present(stack, CredentialAnchorRecord, [anchor.credential_key]) == {
        anchor.credential_key
    }
    assert await _present(stack, User, [user.id]) == {user.id}
    assert not (uploads / f"{gone_jobs[0].id}.upload").exists()
    assert (uploads / f"{kept_jobs[0].id}.upload").exists()
    # the folder is the session's: other tests count what is left in it
    (uploads / f"{kept_jobs[0].id}.upload").unlink()

    # the export holds exactly what was deleted, column for column
    folder = Path(stack.settings.cleanup_export_dir)
    day = datetime.now(UTC).date().isoformat()
    assert set(result.export_files) <= {
        str(folder / f"{t}-{day}.jsonl") for t in ("verification_jobs", "notifications", "alerts")
    }
    exported = _exported(result.export_files)
    for name in result.export_files:  # rows hold addresses: the files are the owner's only
        assert Path(name).stat().st_mode & 0o077 == 0
    for row in (*gone_jobs, *gone_notes, *gone_alerts):
        assert _key(row) in exported
    for row in (*kept_jobs, *kept_notes, *kept_alerts):
        assert _key(row) not in exported
    job = exported[gone_jobs[0].id]
    assert job["status"] == "completed" and job["manifest_uri"] == "ipfs://bafy"
    assert job["file_size"] == 10 and job["tenant"] == "t-cleanup"
    assert datetime.fromisoformat(job["completed_at"]) == gone_jobs[0].completed_at
    note = exported[gone_notes[1].id]
    assert (note["channel"], note["status"], note["target"]) == (
        "webhook",
        "failed",
        "https://hooks.test/x",
    )
    assert exported[gone_alerts[0].id]["condition"] == "cleanup_test"


@pytest.fixture
async def schedules(stack: Stack) -> AsyncIterator[None]:
    """Settle's schedules on the stack's prefix, deleted afterwards (the Monitor would otherwise
    keep running against the shared stack)."""
    await ensure_schedules(stack.temporal, stack.settings)
    yield
    for entry in SCHEDULES.values():
        await stack.temporal.get_schedule_handle(entry.schedule_id(stack.settings)).delete()


async def test_schedules_listed_paused_resumed_triggered(stack: Stack, schedules: None) -> None:
    ops = stack.platform_admin()
    listed = await stack.api.get("/api/v1/schedules", headers=ops)
    assert listed.status_code == 200
    by_name = {s["name"]: s for s in listed.json()["schedules"]}
    assert set(by_name) == set(SCHEDULES) and {"monitor", "cleanup"} <= set(by_name)
    cleanup = by_name["cleanup"]
    assert cleanup["exists"] and cleanup["paused"] is False and cleanup["workflow"] == "Cleanup"
    assert cleanup["schedule_id"] == f"{stack.settings.task_queue_prefix}cleanup"

    # a tenant's admin and a user are refused, and nothing changes
    for roles in (["admin"], ["user"], ["venue_admin"]):
        headers = stack.auth("someone", "tenant-x", roles)
        assert (await stack.api.get("/api/v1/schedules", headers=headers)).status_code == 403
        for action in ("pause", "resume", "trigger"):
            answer = await stack.api.post(f"/api/v1/schedules/cleanup/{action}", headers=headers)
            assert answer.status_code == 403, (roles, action)
    handle = stack.temporal.get_schedule_handle(cleanup["schedule_id"])
    described = await handle.describe()
    assert not described.schedule.state.paused and described.info.num_actions == 0

    paused = await stack.api.post(
        "/api/v1/schedules/cleanup/pause", json={"note": "maintenance"}, headers=ops
    )
    assert paused.status_code == 200 and paused.json()["paused"] is True
    described = await handle.describe()
    assert described.schedule.state.paused and described.schedule.state.note == "maintenance"
    # a worker restart brings the schedule to the current settings but keeps the operator's pause
    await ensure_schedules(stack.temporal, stack.settings)
    assert (await handle.describe()).schedule.state.paused
    resumed = await stack.api.post("/api/v1/schedules/cleanup/resume", headers=ops)
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    assert not (await handle.describe()).schedule.state.paused

    # trigger: one Cleanup run now, which deletes an old finished row
    old = _notification("email", "sent", OLD)
    await _add(stack, [old])
    triggered = await stack.api.post("/api/v1/schedules/cleanup/trigger", headers=ops)
    assert triggered.status_code == 200
    await eventually(
        lambda: _present(stack, Notification, [old.id]),
        lambda present: not present,
        what="the triggered Cleanup run",
    )
    described = await handle.describe()
    assert described.info.num_actions == 1
    listed = await stack.api.get("/api/v1/schedules", headers=ops)
    (run,) = next(s for s in listed.json()["schedules"] if s["name"] == "cleanup")["recent_runs"]
    assert run["workflow_id"].startswith(f"{stack.settings.task_queue_prefix}cleanup-run")

    unknown = await stack.api.post("/api/v1/schedules/nope/trigger", headers=ops)
    assert unknown.status_code == 404


async def test_namespace_retention_is_set_from_the_setting(dev_env: WorkflowEnvironment) -> None:
    client = dev_env.client
    before = await namespace_retention(client, client.namespace)
    try:
        kept = await set_retention(client, client.namespace, 12)
        assert kept == timedelta(days=12)
        assert await namespace_retention(client, client.namespace) == timedelta(days=12)
    finally:
        await set_retention(client, client.namespace, max(before.days, 1))


class Crash(Exception):
    """Stands for the process dying at that point."""


async def test_a_crash_never_deletes_an_unexported_row(stack: Stack, tmp_path: Path) -> None:
    """Export fails: nothing is deleted. Export done but the transaction dies before its commit:
    the row stays too, and the next batch exports it again (at-least-once files)."""
    row = _alert("cleared", OLD - timedelta(days=365))  # older than any other test's rows
    await _add(stack, [row])
    cutoff = datetime.now(UTC) - timedelta(days=90)
    path = cleanup_store.export_path(tmp_path, "alerts", "2026-01-01")

    async def failing_write(lines: list[str]) -> None:
        raise Crash("disk full")

    with pytest.raises(Crash):
        async with stack.sessions.begin() as session:
            await cleanup_store.purge_batch(session, "alerts", cutoff, 1000, failing_write)
    assert await _present(stack, Alert, [row.id]) == {row.id}

    async def write(lines: list[str]) -> None:
        cleanup_store.append_fsynced(path, lines)

    with pytest.raises(Crash):
        async with stack.sessions.begin() as session:
            deleted = await cleanup_store.purge_batch(session, "alerts", cutoff, 1000, write)
            assert row.id in [r["id"] for r in deleted]
            raise Crash("killed before the commit")
    assert await _present(stack, Alert, [row.id]) == {row.id}
    assert _ids(path).count(row.id) == 1

    async with stack.sessions.begin() as session:
        await cleanup_store.purge_batch(session, "alerts", cutoff, 1000, write)
    assert await _present(stack, Alert, [row.id]) == set()
    assert _ids(path).count(row.id) == 2


def _ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def _delivery(endpoint: WebhookEndpoint, status: str, at: datetime) -> WebhookDelivery:
    event = f"evt-{uuid.uuid4()}"
    return WebhookDelivery(
        id=f"{event}:{endpoint.id}",
        event_id=event,
        endpoint_id=endpoint.id,
        tenant=endpoint.tenant,
        event_type="deposit.credited",
        data={"deposit_id": "d1"},
        status=status,
        created_at=at,
        delivered_at=at if status == "delivered" else None,
    )


def _attempt(delivery: WebhookDelivery, at: datetime) -> WebhookAttempt:
    return WebhookAttempt(
        delivery_id=delivery.id,
        endpoint_id=delivery.endpoint_id,
        status="succeeded" if delivery.status == "delivered" else "failed",
        response_code=200 if delivery.status == "delivered" else 500,
        duration_ms=12,
        trigger="retry",
        started_at=at,
        finished_at=at,
    )


async def test_old_finished_webhook_deliveries_and_attempts_are_exported_then_deleted(
    stack: Stack,
) -> None:
    """Subscription deliveries (issue 15 §5) are operational rows too: a finished one goes with
    its attempts, attempts first (a delivery's delete cascades to its attempts, and no row is
    deleted unexported); pending and young deliveries stay with theirs."""
    endpoint = WebhookEndpoint(
        tenant="t-cleanup", url="https://hooks.test/e", secret="s" * 32, event_types=[]
    )
    await _add(stack, [endpoint])
    gone = [_delivery(endpoint, "delivered", OLD), _delivery(endpoint, "failed", OLD)]
    kept = [_delivery(endpoint, "pending", OLD), _delivery(endpoint, "delivered", YOUNG)]
    # an old failed delivery an operator redelivered lately: finished lately, so it stays
    redelivered = _delivery(endpoint, "delivered", YOUNG)
    redelivered.created_at = OLD
    kept.append(redelivered)
    await _add(stack, [*gone, *kept])
    gone_attempts = [_attempt(d, OLD) for d in gone for _ in range(2)]
    kept_attempts = [_attempt(d, OLD) for d in kept]
    await _add(stack, [*gone_attempts, *kept_attempts])

    result = await stack.temporal.execute_workflow(
        "Cleanup",
        CleanupInput(
            task_queue_prefix=stack.settings.task_queue_prefix, row_retention_days=90, batch_size=2
        ),
        id=f"cleanup-test-{uuid.uuid4()}",
        task_queue=workflow_queue(stack.settings.task_queue_prefix),
        result_type=CleanupResult,
    )

    assert await _present(stack, WebhookDelivery, [d.id for d in gone]) == set()
    assert await _present(stack, WebhookDelivery, [d.id for d in kept]) == {d.id for d in kept}
    assert await _present(stack, WebhookAttempt, [a.seq for a in gone_attempts]) == set()
    assert await _present(stack, WebhookAttempt, [a.seq for a in kept_attempts]) == {
        a.seq for a in kept_attempts
    }
    assert await _present(stack, WebhookEndpoint, [endpoint.id]) == {endpoint.id}
    assert result.deleted["webhook_attempts"] >= 4 and result.deleted["webhook_deliveries"] >= 2
    lines = [
        json.loads(line)
        for name in result.export_files
        for line in Path(name).read_text().splitlines()
    ]
    exported_deliveries = {row["id"] for row in lines if "event_type" in row}
    exported_attempts = {row["seq"] for row in lines if "duration_ms" in row}
    assert {d.id for d in gone} <= exported_deliveries
    assert not {d.id for d in kept} & exported_deliveries
    assert {a.seq for a in gone_attempts} <= exported_attempts
    assert not {a.seq for a in kept_attempts} & exported_attempts
