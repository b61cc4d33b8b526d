"""The Monitor raises an alert when a reading is out of bounds, tells the admins (email in the
catcher, signed webhook to the alert tenant's endpoint), and clears it when the reading is back.

Runs the real ``Monitor`` workflow on the dev server with the stack's worker; the treasury's gas
balance on anvil is the reading driven out of bounds (a threshold above what it holds), because
it is the one no other test moves.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from domain.monitor import MonitorInput, MonitorResult
from domain.queues import workflow_queue
from runtime.schedules import monitor_input, monitor_schedule
from store.models import Alert
from tests.e2e import test_tickets
from tests.e2e.test_tickets import Receiver
from tests.fixtures.stack import Stack, eventually

ADMIN = "ops@settle.test"
receiver = test_tickets.receiver  # the venue receiver fixture, as the alert tenant's endpoint


async def run_monitor(stack: Stack, request: MonitorInput) -> MonitorResult:
    return await stack.temporal.execute_workflow(
        "Monitor",
        request,
        id=f"monitor-test-{uuid.uuid4()}",
        task_queue=workflow_queue(stack.settings.task_queue_prefix),
        result_type=MonitorResult,
    )


async def alerts(stack: Stack, condition: str) -> list[Alert]:
    async with stack.sessions() as session:
        rows = await session.execute(select(Alert).where(Alert.condition == condition))
        return list(rows.scalars())


def starving_treasury(stack: Stack, tenant: str) -> MonitorInput:
    request = monitor_input(stack.settings.model_copy(update={"alert_webhook_tenant": tenant}))
    request.thresholds.treasury_min_wei = 10**40  # more gas than exists
    return request


async def test_the_monitor_raises_tells_admins_and_clears(stack: Stack, receiver: Receiver) -> None:
    tenant = f"ops-{uuid.uuid4().hex[:6]}"
    venue = stack.auth("ops-admin", tenant, ["admin"])
    created = await stack.api.post(
        "/api/v1/webhook-endpoints", json={"url": receiver.url}, headers=venue
    )
    assert created.status_code == 201
    secret = created.json()["secret"]

    result = await run_monitor(stack, starving_treasury(stack, tenant))
    backlog = next(r for r in result.readings if r.condition == "backlog")
    assert backlog.value >= 0 and "could not be measured" not in backlog.message
    assert not backlog.breached  # nothing is held in the stack's activity queues
    gas = next(r for r in result.readings if r.condition == "treasury_gas")
    assert gas.breached and gas.value > 0  # a real balance read from anvil
    (raised,) = [a for a in result.changes.raised if a.condition == "treasury_gas"]
    (row,) = [a for a in await alerts(stack, "treasury_gas") if a.id == raised.id]
    assert row.status == "open" and row.severity == "critical"

    # the admins are told: an email in the catcher and a signed webhook
    mails = await stack.mail.wait_for(
        lambda ms: any(raised.id in str(m.message["X-Settle-Reference"]) for m in ms)
    )
    assert any(ADMIN in m.recipients and "treasury_gas" in m.message["Subject"] for m in mails)
    delivered = await eventually(
        lambda: _async(receiver.verified(secret)),
        lambda events: any(e["data"].get("alert_id") == raised.id for e in events),
        what="the alert webhook",
    )
    assert any(e["type"] == "settle.alert" for e in delivered)

    # still out of bounds: the same alert stays open, nothing new is raised or sent
    again = await run_monitor(stack, starving_treasury(stack, tenant))
    assert all(a.condition != "treasury_gas" for a in again.changes.raised)
    assert [a.status for a in await alerts(stack, "treasury_gas") if a.id == raised.id] == ["open"]

    # back within bounds: cleared
    cleared = await run_monitor(stack, monitor_input(stack.settings))
    assert raised.id in cleared.changes.cleared
    (row,) = [a for a in await alerts(stack, "treasury_gas") if a.id == raised.id]
    assert row.status == "cleared" and row.cleared_at is not None


async def test_alerts_api_lists_acknowledges_and_sends_a_test_alert(stack: Stack) -> None:
    admin = stack.auth("root", "t-ops", ["platform_admin"])
    await run_monitor(stack, starving_treasury(stack, "nobody"))
    listed = await stack.api.get("/api/v1/alerts?status=open", headers=admin)
    assert listed.status_code == 200
    gas = [a for a in listed.json() if a["condition"] == "treasury_gas"]
    assert gas and gas[0]["status"] == "open"

    acked = await stack.api.post(f"/api/v1/alerts/{gas[0]['id']}/acknowledge", headers=admin)
    assert acked.status_code == 200 and acked.json()["acknowledged_by"] == "root"

    started = await stack.api.post("/api/v1/alerts/test", headers=admin)
    assert started.status_code == 202
    workflow_id = started.json()["workflow_id"]
    await stack.temporal.get_workflow_handle(workflow_id).result()
    tests = await alerts(stack, "test")
    assert any(a.status == "open" and "root" in a.message for a in tests)
    await stack.mail.wait_for(
        lambda ms: any("test" in m.message["Subject"] and ADMIN in m.recipients for m in ms)
    )

    # the next regular run clears the test alert and the treasury alert
    await run_monitor(stack, monitor_input(stack.settings))
    assert all(a.status == "cleared" for a in await alerts(stack, "test"))
    assert all(a.status == "cleared" for a in await alerts(stack, "treasury_gas"))

    # the platform's alerts are the platform_admin's: a tenant's admin sees none of them
    tenant_admin = stack.auth("ann", "t-ops", ["admin"])
    theirs = await stack.api.get("/api/v1/alerts", headers=tenant_admin)
    assert theirs.status_code == 200 and theirs.json() == []
    foreign = await stack.api.post(
        f"/api/v1/alerts/{gas[0]['id']}/acknowledge", headers=tenant_admin
    )
    assert foreign.status_code == 404
    assert (await stack.api.post("/api/v1/alerts/test", headers=tenant_admin)).status_code == 403

    # errors and roles
    user = stack.auth("joe", "t-ops", ["user"])
    assert (await stack.api.get("/api/v1/alerts", headers=user)).status_code == 403
    assert (await stack.api.post("/api/v1/alerts/test", headers=user)).status_code == 403
    assert (await stack.api.get("/api/v1/alerts")).status_code == 401
    missing = await stack.api.post(f"/api/v1/alerts/{uuid.uuid4()}/acknowledge", headers=admin)
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "alert_id"
    bad = await stack.api.post("/api/v1/alerts/not-an-id/acknowledge", headers=admin)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "alert_id"
    wrong = await stack.api.get("/api/v1/alerts?status=sideways", headers=admin)
    assert wrong.status_code == 422 and wrong.json()["error"]["field"] == "status"


def test_the_schedule_runs_the_monitor_every_interval_without_overlap(stack: Stack) -> None:
    schedule = monitor_schedule(stack.settings)
    assert (
        schedule.spec.intervals[0].every.total_seconds() == stack.settings.monitor_interval_seconds
    )
    assert schedule.policy.overlap.name == "SKIP"


async def _async(value: Any) -> Any:
    return value


async def test_a_held_queue_backlog_raises_an_alert_and_clears_once_resumed(stack: Stack) -> None:
    from tests.e2e.test_tickets import buy

    admin = stack.auth("root", "t-ops", ["platform_admin"])
    limits = "/api/v1/rate-limits"
    stopped = await stack.api.post(
        f"{limits}/emergency-stop", json={"key": "stripe"}, headers=admin
    )
    assert stopped.status_code == 200, stopped.text
    try:
        from tests.fixtures.events import create_event

        held_tenant = f"held-{uuid.uuid4().hex[:6]}"
        buyer = stack.auth("held", held_tenant)
        _, accepted = await buy(stack, buyer, await create_event(stack, held_tenant))
        request = monitor_input(stack.settings)
        request.thresholds.backlog_max = 0

        async def backlog() -> float:
            readings = (await run_monitor(stack, request)).readings
            return next(r for r in readings if r.condition == "backlog").value

        await eventually(backlog, lambda v: v >= 1, what="the held payment in the stripe backlog")
        (row,) = [a for a in await alerts(stack, "backlog") if a.status == "open"]
        assert "stripe" in row.message
    finally:
        resumed = await stack.api.post(f"{limits}/resume", json={"key": "stripe"}, headers=admin)
        assert resumed.status_code == 200, resumed.text
    await eventually(
        lambda: stack.api.get(f"/api/v1/tickets/purchase/{accepted['id']}", headers=buyer),
        lambda r: r.json()["status"] == "completed",
        what="the held purchase to complete after resume",
    )

    async def open_backlog_alerts() -> int:
        await run_monitor(stack, request)  # backlog stats are approximate and lag a little
        return sum(a.status == "open" for a in await alerts(stack, "backlog"))

    await eventually(open_backlog_alerts, lambda n: n == 0, what="the backlog alert to clear")
