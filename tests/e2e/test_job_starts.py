"""POST /api/v1/jobs and /api/v1/jobs/batch: any operation started as a job, with its options."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from store.models import MpesaDeposit, TicketPurchase
from tests.e2e.test_tickets import body as ticket_body
from tests.fixtures.chain import new_wallet
from tests.fixtures.events import create_event
from tests.fixtures.stack import Stack, eventually, unique_tenant

pytestmark = pytest.mark.usefixtures("balanced_ledger")


def deposit(amount: int = 120) -> dict[str, Any]:
    return {"phone": "254708374149", "amount": amount, "wallet_address": new_wallet()}


async def deposit_status(stack: Stack, deposit_id: str, headers: dict[str, str]) -> str:
    response = await stack.api.get(f"/api/v1/deposit/{deposit_id}", headers=headers)
    return str(response.json()["status"])


async def count(stack: Stack, model: Any, tenant: str) -> int:
    async with stack.sessions() as session:
        query = select(func.count()).select_from(model).where(model.tenant == tenant)
        return int((await session.execute(query)).scalar_one())


async def test_a_deposit_job_runs_like_the_deposit_route(stack: Stack) -> None:
    tenant = unique_tenant()
    headers = stack.auth("amy", tenant)
    response = await stack.api.post(
        "/api/v1/jobs", json={"type": "mpesa_deposit", "data": deposit()}, headers=headers
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["workflow_id"] == f"mpesa-deposit-{job['id']}"
    assert job["job_url"] == f"/api/v1/jobs/{job['workflow_id']}"
    await eventually(
        lambda: deposit_status(stack, job["id"], headers),
        lambda status: status == "credited",
        what="the deposit job to be credited",
    )
    seen = await stack.api.get(job["job_url"], headers=headers)
    assert seen.status_code == 200 and seen.json()["kind"] == "mpesa_deposit"


async def test_delay_and_priority_reach_temporal(stack: Stack) -> None:
    tenant = unique_tenant()
    headers = stack.auth("bob", tenant)
    response = await stack.api.post(
        "/api/v1/jobs",
        json={
            "type": "mpesa_deposit",
            "data": deposit(),
            "options": {"delay": 3600, "priority": 1},
        },
        headers=headers,
    )
    assert response.status_code == 202, response.text
    handle = stack.temporal.get_workflow_handle(response.json()["workflow_id"])
    try:
        described = await handle.describe()
        info = described.raw_description.workflow_execution_info
        waits = info.execution_time.ToDatetime() - info.start_time.ToDatetime()
        assert waits.total_seconds() >= 3590  # starts in an hour: a start delay on the server
        assert info.priority.priority_key == 1
        assert await deposit_status(stack, response.json()["id"], headers) == "initiated"
    finally:
        await handle.terminate("test over")


async def test_idempotency_key_starts_one_job(stack: Stack) -> None:
    tenant = unique_tenant()
    headers = stack.auth("cat", tenant)
    job = {"type": "mpesa_deposit", "data": deposit(), "idempotency_key": "order-7"}
    first = await stack.api.post("/api/v1/jobs", json=job, headers=headers)
    second = await stack.api.post("/api/v1/jobs", json=job, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert await count(stack, MpesaDeposit, tenant) == 1


BAD = [
    pytest.param({"type": "fax", "data": {}}, "type", id="unknown-type"),
    pytest.param({"type": "mpesa_deposit", "data": {"amount": 10}}, "data.phone", id="data"),
    pytest.param(
        {"type": "mpesa_deposit", "data": {**deposit(), "amount": "ten"}}, "data.amount", id="type"
    ),
    pytest.param(
        {"type": "mpesa_deposit", "data": deposit(), "options": {"priority": 9}},
        "options.priority",
        id="priority",
    ),
    pytest.param(
        {"type": "mpesa_deposit", "data": deposit(), "options": {"delay": -1}},
        "options.delay",
        id="delay",
    ),
    pytest.param(
        {"type": "mpesa_deposit", "data": deposit(10**9)}, "data.amount", id="amount-bounds"
    ),
]


@pytest.mark.parametrize(("job", "field"), BAD)
async def test_bad_job_is_422_naming_the_field_and_starts_nothing(
    stack: Stack, job: dict[str, Any], field: str
) -> None:
    tenant = unique_tenant()
    response = await stack.api.post("/api/v1/jobs", json=job, headers=stack.auth("dan", tenant))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    assert await count(stack, MpesaDeposit, tenant) == 0


async def test_a_batch_with_one_bad_job_starts_nothing(stack: Stack) -> None:
    tenant = unique_tenant()
    event_id = (await create_event(stack, tenant))["id"]
    jobs = [
        {"type": "mpesa_deposit", "data": deposit()},
        {"type": "ticket_purchase", "data": ticket_body(event_id)},
        {"type": "ticket_purchase", "data": ticket_body(event_id, buyer_wallet="nope")},
    ]
    response = await stack.api.post(
        "/api/v1/jobs/batch", json={"jobs": jobs}, headers=stack.auth("eve", tenant)
    )
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "jobs.2.data.buyer_wallet"
    assert await count(stack, MpesaDeposit, tenant) == 0
    assert await count(stack, TicketPurchase, tenant) == 0


async def test_a_batch_reports_each_job(stack: Stack) -> None:
    tenant = unique_tenant()
    headers = stack.auth("fay", tenant)
    event_id = (await create_event(stack, tenant))["id"]
    seat = ticket_body(event_id, seat="S-1")
    jobs = [
        {"type": "mpesa_deposit", "data": deposit()},
        {"type": "deposit_intent", "data": {"amount": "12.50", "chain": "base"}},
        {"type": "ticket_purchase", "data": seat},
        {"type": "ticket_purchase", "data": ticket_body(event_id, seat="S-1")},
    ]
    response = await stack.api.post("/api/v1/jobs/batch", json={"jobs": jobs}, headers=headers)
    assert response.status_code == 202, response.text
    items = response.json()
    assert [i["index"] for i in items] == [0, 1, 2, 3]
    assert [i["job"]["type"] for i in items[:3]] == [
        "mpesa_deposit",
        "deposit_intent",
        "ticket_purchase",
    ]
    assert items[3]["job"] is None and items[3]["error"]["status"] == 409  # the seat is taken
    assert await count(stack, TicketPurchase, tenant) == 1
    too_many = await stack.api.post(
        "/api/v1/jobs/batch",
        json={"jobs": [{"type": "mpesa_deposit", "data": deposit()}] * 1001},
        headers=headers,
    )
    assert too_many.status_code == 422 and too_many.json()["error"]["field"] == "jobs"
    # let the ticket finish minting: a mint still running would take the next test's
    # sandbox mint failure (fail-mints counts any mint)
    await eventually(
        lambda: stack.api.get(items[2]["job"]["status_url"], headers=headers),
        lambda r: r.json()["status"] == "completed",
        what="the batch's ticket purchase",
    )
