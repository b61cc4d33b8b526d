"""A workflow that started keeps its row: an error on start that can come back after the start
went through (DEADLINE_EXCEEDED) keeps the row and answers 202; only a transport failure that
``describe`` confirms (no such workflow) removes the row and answers 503.

The API under test is a second app on the stack's settings (same task queues, so the stack's worker
runs what it starts) whose Temporal client wraps ``start_workflow``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.app import create_app
from domain.mpesa import DepositStatus
from sandbox.serve import serve
from store.models import MpesaDeposit
from tests.e2e.test_credentials import CID_V1, data_hash, settled
from tests.e2e.test_credentials import url as credential_url
from tests.e2e.test_mpesa_deposit_api import initiate, ledger_entries_for
from tests.e2e.test_tickets import body as ticket_body
from tests.e2e.test_tickets import until as ticket_until
from tests.e2e.test_verification_jobs import document, finished, published, submit
from tests.fixtures.chain import new_wallet
from tests.fixtures.events import create_event
from tests.fixtures.stack import Stack, unique_tenant

pytestmark = pytest.mark.usefixtures("balanced_ledger")


def wrapped(base: Client, *, go_through: bool, status: RPCStatusCode) -> tuple[Client, list[str]]:
    """A client on ``base``'s connection whose ``start_workflow`` performs the start (or not,
    ``go_through=False``) and then raises an ``RPCError`` with ``status``."""
    client = Client(**base.config())
    real = client.start_workflow
    started: list[str] = []

    async def start_workflow(*args: Any, **kwargs: Any) -> Any:
        if go_through:
            await real(*args, **kwargs)
            started.append(kwargs["id"])
        raise RPCError(f"injected {status.name}", status, b"")

    client.start_workflow = start_workflow  # type: ignore[method-assign]
    return client, started


@asynccontextmanager
async def api_with(stack: Stack, client: Client) -> AsyncIterator[httpx.AsyncClient]:
    server = await serve(create_app(stack.settings, temporal=client))
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            yield http
    finally:
        await server.stop()


async def deposit_rows(stack: Stack, tenant: str) -> int:
    async with stack.sessions() as session:
        return (
            await session.execute(
                select(func.count()).select_from(MpesaDeposit).where(MpesaDeposit.tenant == tenant)
            )
        ).scalar_one()


class Api:
    """``initiate`` of the deposit tests, against another API."""

    def __init__(self, stack: Stack, http: httpx.AsyncClient) -> None:
        self.api = http
        self.settings = stack.settings


async def test_deposit_whose_start_timed_out_after_going_through_keeps_its_row(
    stack: Stack,
) -> None:
    client, started = wrapped(
        stack.temporal, go_through=True, status=RPCStatusCode.DEADLINE_EXCEEDED
    )
    tenant = unique_tenant()
    async with api_with(stack, client) as http:
        response = await initiate(Api(stack, http), stack.auth("dee", tenant), wallet=new_wallet())  # type: ignore[arg-type]
    assert response.status_code == 202, response.text
    deposit = response.json()
    assert started and started[0] == deposit["workflow_id"]
    # the row stayed, and the workflow runs to its credit
    row = await stack.wait_for_deposit(deposit["id"], {DepositStatus.CREDITED}, timeout=40)
    assert row.workflow_id == deposit["workflow_id"]
    assert await ledger_entries_for(stack, deposit["id"]) == 1


@pytest.mark.parametrize(
    "status", [RPCStatusCode.UNAVAILABLE, RPCStatusCode.RESOURCE_EXHAUSTED], ids=lambda s: s.name
)
async def test_deposit_whose_start_never_reached_temporal_keeps_nothing(
    stack: Stack, status: RPCStatusCode
) -> None:
    client, _ = wrapped(stack.temporal, go_through=False, status=status)
    tenant = unique_tenant()
    async with api_with(stack, client) as http:
        response = await initiate(Api(stack, http), stack.auth("nia", tenant), wallet=new_wallet())  # type: ignore[arg-type]
    assert response.status_code == 503, response.text
    assert "nothing was started" in response.json()["error"]["message"]
    assert await deposit_rows(stack, tenant) == 0
    assert (await stack.temporal.count_workflows(f'SettleTenant = "{tenant}"')).count == 0


def late_timeout(stack: Stack) -> tuple[Client, list[str]]:
    return wrapped(stack.temporal, go_through=True, status=RPCStatusCode.DEADLINE_EXCEEDED)


async def test_ticket_purchase_whose_start_timed_out_keeps_its_row(stack: Stack) -> None:
    client, started = late_timeout(stack)
    tenant = unique_tenant()
    headers = stack.auth("tom", tenant)
    event = await create_event(stack, tenant)
    async with api_with(stack, client) as http:
        response = await http.post(
            "/api/v1/tickets/purchase", json=ticket_body(event["id"]), headers=headers
        )
    assert response.status_code == 202, response.text
    purchase = response.json()
    assert started[0] == purchase["workflow_id"]
    await ticket_until(
        stack, purchase["id"], headers, lambda v: v["status"] == "completed", "the purchase"
    )


async def test_credential_anchor_whose_start_timed_out_keeps_its_row(stack: Stack) -> None:
    client, started = late_timeout(stack)
    headers = stack.auth("issuer", unique_tenant())
    body = {"data_hash": data_hash(), "ipfs_cid": CID_V1, "batch": False}
    async with api_with(stack, client) as http:
        response = await http.post(credential_url("cert-7"), json=body, headers=headers)
    assert response.status_code == 202, response.text
    assert started == [response.json()["workflow_id"]] * len(started)
    assert (await settled(stack, "cert-7", headers))["status"] == "confirmed"


async def test_deposit_intent_whose_watch_start_timed_out_keeps_the_intent(stack: Stack) -> None:
    client, started = late_timeout(stack)
    headers = stack.auth("ivy", unique_tenant())
    async with api_with(stack, client) as http:
        response = await http.post(
            "/api/v1/deposit/intent/create",
            json={"amount": "3.25", "chain": "base"},
            headers=headers,
        )
    assert response.status_code == 201, response.text
    intent = response.json()
    assert intent["workflow_id"] in started
    seen = await stack.api.get(f"/api/v1/deposit/intent/{intent['id']}", headers=headers)
    assert seen.status_code == 200 and seen.json()["status"] == "open"
    described = await stack.temporal.get_workflow_handle(intent["workflow_id"]).describe()
    assert described.status is not None and described.status.name == "RUNNING"
    await stack.temporal.get_workflow_handle(intent["workflow_id"]).terminate(reason="test over")


async def test_verification_whose_start_timed_out_keeps_its_job(stack: Stack) -> None:
    client, started = late_timeout(stack)
    headers = stack.auth("vera", unique_tenant())
    data = document()
    content = await published(stack, data)
    async with api_with(stack, client) as http:
        response = await submit(stack, headers, data, content.manifest_uri, api=http)
    assert response.status_code == 202, response.text
    job_id = response.json()["jobId"]
    assert started and job_id in started[0]
    done = await finished(stack, job_id, headers)
    assert done["status"] == "completed", done
