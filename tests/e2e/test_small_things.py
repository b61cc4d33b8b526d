"""Issue 15 §9 over HTTP: every timestamp carries its UTC offset, a credited deposit has no
``failure_reason``, a malformed cursor is a 422 naming ``cursor``, the verification listing is
live."""

from __future__ import annotations

import base64
import re
import time
import uuid
from typing import Any

import pytest

from api.task_queue_limits import set_limit
from domain.mpesa import DepositStatus
from domain.queues import ActivityQueue, activity_queue_for_prefix
from tests.e2e.test_credentials import CID_V1, data_hash, settled
from tests.e2e.test_credentials import url as anchor_url
from tests.e2e.test_deposit_intents import create as create_intent
from tests.e2e.test_jobs_dead_letter import DEAD, JOBS, assert_credited, park_deposit, unblock
from tests.e2e.test_queues_rate_limits import LIMITS, QUEUES, lifted  # noqa: F401
from tests.e2e.test_tickets import buy
from tests.e2e.test_verification_jobs import document, published, submit
from tests.fixtures.events import create_event
from tests.fixtures.stack import Stack, eventually, unique_tenant

pytestmark = pytest.mark.usefixtures("balanced_ledger", "lifted")

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")


def timestamps(value: Any, where: str = "$") -> list[tuple[str, str]]:
    """Every ISO-8601 date-time string in a JSON document, with its path."""
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in timestamps(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [t for i, v in enumerate(value) for t in timestamps(v, f"{where}[{i}]")]
    if isinstance(value, str) and ISO.match(value):
        return [(where, value)]
    return []


def without_offset(body: Any) -> list[tuple[str, str]]:
    return [(p, v) for p, v in timestamps(body) if not v.endswith(("Z", "+00:00"))]


async def test_every_timestamp_in_every_answer_carries_its_utc_offset(stack: Stack) -> None:
    tenant = unique_tenant()
    owner = stack.auth("kofi", tenant)
    admin = stack.auth("root", tenant, ["admin"])
    platform = stack.platform_admin()
    parked = await park_deposit(stack, tenant, "kofi", amount=25)

    anchored = await stack.api.post(
        anchor_url("cert-1"), json={"data_hash": data_hash(), "ipfs_cid": CID_V1}, headers=owner
    )
    assert anchored.status_code == 202, anchored.text
    await settled(stack, "cert-1", owner)
    intent = await create_intent(stack, owner)
    assert intent.status_code in (200, 201, 202), intent.text
    data = document()
    job = await submit(stack, owner, data, (await published(stack, data)).manifest_uri)
    assert job.status_code == 202, job.text
    event = await create_event(stack, tenant)
    _, purchase = await buy(stack, owner, event)
    # a held queue has a limit with the time it was set
    stopped = await stack.api.post(
        f"{LIMITS}/emergency-stop", json={"key": "stripe"}, headers=platform
    )
    assert stopped.status_code == 200, stopped.text
    started = await stack.api.post("/api/v1/alerts/test", headers=platform)
    assert started.status_code == 202, started.text
    await stack.temporal.get_workflow_handle(started.json()["workflow_id"]).result()

    reads = [
        (f"/api/v1/deposit/{parked.deposit_id}", owner),
        (f"{JOBS}/{parked.workflow_id}", owner),
        (DEAD, admin),
        (anchor_url("cert-1"), owner),
        (f"/api/v1/deposit/intent/{intent.json()['id']}", owner),
        (f"/api/verification-jobs/{job.json()['jobId']}", owner),
        ("/api/verification-jobs", owner),
        ("/api/v1/alerts", platform),
        (QUEUES, platform),
        (f"{QUEUES}/ticket_purchase/status", platform),
        (f"{QUEUES}/mpesa_deposit/jobs", platform),
        (f"{LIMITS}/status/stripe", platform),
        (f"/api/v1/events/{event['id']}", owner),
        (f"/api/v1/tickets/purchase/{purchase['id']}", owner),
    ]
    seen = 0
    for path, headers in reads:
        response = await stack.api.get(path, headers=headers)
        assert response.status_code == 200, (path, response.text)
        assert without_offset(response.json()) == [], path
        seen += len(timestamps(response.json()))
    assert seen > len(reads)


async def test_a_credited_deposit_has_no_failure_reason(stack: Stack) -> None:
    tenant = unique_tenant()
    parked = await park_deposit(stack, tenant, "wanjiru", amount=35)
    row = await stack.deposit_row(parked.deposit_id)
    assert row is not None and row.failure_reason  # the park recorded why
    await unblock(stack, parked)
    admin = stack.auth("root", tenant, ["admin"])
    retried = await stack.api.post(f"{DEAD}/{parked.workflow_id}/retry", headers=admin)
    assert retried.status_code == 202, retried.text
    await assert_credited(stack, parked)
    row = await stack.wait_for_deposit(parked.deposit_id, {DepositStatus.CREDITED})
    assert row.failure_reason is None
    view = await stack.api.get(f"/api/v1/deposit/{parked.deposit_id}", headers=parked.owner)
    assert view.json()["status"] == "credited" and view.json()["failure_reason"] is None


GARBAGE = [
    "!!!",
    "not base64 at all",
    base64.urlsafe_b64encode(b"\xff\x00junk\x01").decode(),
    base64.urlsafe_b64encode(b'{"token": "x"}' + bytes(range(40))).decode(),
]


@pytest.mark.parametrize("cursor", GARBAGE)
async def test_a_malformed_cursor_is_a_fast_422_naming_cursor(stack: Stack, cursor: str) -> None:
    platform = stack.platform_admin()
    began = time.monotonic()
    response = await stack.api.get(
        f"{QUEUES}/mpesa_deposit/jobs", params={"cursor": cursor}, headers=platform
    )
    assert response.status_code == 422, response.text
    error = response.json()
    assert error.get("error", {}).get("field") == "cursor" or "cursor" in str(error["detail"])
    assert time.monotonic() - began < 2


async def test_a_cursor_serves_its_own_listing_only(stack: Stack) -> None:
    tenant = unique_tenant()
    admin = stack.auth("root", tenant, ["admin"])
    for name in ("ama", "kwame"):
        await park_deposit(stack, tenant, name, amount=21)
    jobs = f"{QUEUES}/mpesa_deposit/jobs"
    await eventually(
        lambda: stack.api.get(jobs, params={"limit": 2}, headers=admin),
        lambda r: len(r.json()["items"]) == 2,
        what="both deposits listed",
    )
    first = await stack.api.get(jobs, params={"limit": 1}, headers=admin)
    cursor = first.json()["next_cursor"]
    assert first.status_code == 200 and cursor
    second = await stack.api.get(jobs, params={"limit": 1, "cursor": cursor}, headers=admin)
    assert second.status_code == 200, second.text
    assert second.json()["items"][0]["id"] != first.json()["items"][0]["id"]
    # the same cursor for another listing (a filter, another tenant) is not one it returned
    filtered = {"limit": 1, "cursor": cursor, "status": "needs_attention"}
    other = await stack.api.get(jobs, params=filtered, headers=admin)
    assert other.status_code == 422 and other.json()["error"]["field"] == "cursor"
    stranger = stack.auth("root", unique_tenant(), ["admin"])
    theirs = await stack.api.get(jobs, params={"limit": 1, "cursor": cursor}, headers=stranger)
    assert theirs.status_code == 422 and theirs.json()["error"]["field"] == "cursor"


async def test_the_listing_shows_live_progress(stack: Stack) -> None:
    owner = stack.auth(f"u-{uuid.uuid4().hex[:6]}", unique_tenant())
    data = document()
    manifest = (await published(stack, data)).manifest_uri
    # the IPFS queue is held, so the job stays at "file hashed" (10): the row still says 0
    ipfs = activity_queue_for_prefix(stack.settings.task_queue_prefix, ActivityQueue.IPFS)
    await set_limit(stack.temporal, ipfs, 0, "settle test: hold the manifest fetch")
    job = await submit(stack, owner, data, manifest)
    assert job.status_code == 202, job.text
    job_id = job.json()["jobId"]
    await eventually(
        lambda: stack.api.get(f"/api/verification-jobs/{job_id}", headers=owner),
        lambda r: r.json()["progress"] == 10,
        what="the job's own GET to show progress 10",
    )
    listing = await stack.api.get("/api/verification-jobs", headers=owner)
    (listed,) = [j for j in listing.json()["jobs"] if j["id"] == job_id]
    assert (listed["status"], listed["progress"]) == ("active", 10)
    row = await stack.api.get(f"/api/verification-jobs/{job_id}", headers=owner)
    assert row.json()["progress"] == 10
    await set_limit(stack.temporal, ipfs, None, "settle test cleanup")
    done = await eventually(
        lambda: stack.api.get("/api/verification-jobs", headers=owner),
        lambda r: r.json()["jobs"][0]["status"] == "completed",
        timeout=30,
        what="the job to complete",
    )
    assert done.json()["jobs"][0]["progress"] == 100
