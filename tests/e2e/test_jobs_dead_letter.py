"""Jobs and dead letters over HTTP, against the real dev server, worker, sandboxes and database.

A deposit is parked the way it happens in production when the ledger refuses a credit: its
ledger key is already taken by another entry (``IdempotencyConflict``), so the credit exhausts its
retries and the workflow waits with ``SettleStatus=needs_attention``. Removing that entry and
sending ``retry`` through the API lets it finish and credit the portfolio.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import delete

from api.app import create_app
from api.auth import issue_token
from domain.mpesa import DepositStatus
from providers.daraja import parse_stk_callback
from sandbox.serve import serve
from store.deposits import ledger_key
from store.models import LedgerEntry
from tests.e2e.test_mpesa_deposit_api import (
    PHONE_NO_CALLBACK,
    initiate,
    ledger_entries_for,
    portfolio,
    usdc_for,
)
from tests.fixtures.events import create_event
from tests.fixtures.stack import Stack, eventually, stack_settings, unique_tenant
from workflows.mpesa_deposit import MpesaDeposit as MpesaDepositWorkflow

pytestmark = pytest.mark.usefixtures("balanced_ledger")

JOBS = "/api/v1/jobs"
DEAD = "/api/v1/dead-letter"


@dataclass
class Parked:
    deposit_id: str
    workflow_id: str
    amount: int
    owner: dict[str, str]
    blockers: list[str]


async def _callback_for(stack: Stack, deposit_id: str) -> tuple[dict[str, Any], str, str | None]:
    row = await stack.wait_for_deposit(deposit_id, {DepositStatus.AWAITING_PAYMENT})
    checkout = row.checkout_request_id
    assert checkout is not None
    payload = (await stack.api.get(f"{stack.daraja.url}/_sandbox/callback-body/{checkout}")).json()
    return payload, checkout, parse_stk_callback(payload).receipt


async def park_deposit(stack: Stack, tenant: str, subject: str, amount: int = 40) -> Parked:
    """An M-Pesa deposit whose credit is refused by the ledger until :func:`unblock`."""
    owner = stack.auth(subject, tenant)
    response = await initiate(stack, owner, phone=PHONE_NO_CALLBACK, amount=amount)
    assert response.status_code == 202, response.text
    body = response.json()
    payload, checkout, receipt = await _callback_for(stack, body["id"])
    # the credit's ledger key (with the receipt, or the CheckoutRequestID if the STK query answers
    # first) already belongs to an entry with other postings
    blockers = sorted({ledger_key(checkout, receipt), ledger_key(checkout, None)})
    async with stack.sessions.begin() as session:
        session.add_all(
            LedgerEntry(idempotency_key=key, kind="test_blocker", description="blocks a credit")
            for key in blockers
        )
    assert (await stack.api.post(stack.callback_path, json=payload)).status_code == 200
    await stack.wait_for_deposit(body["id"], {DepositStatus.NEEDS_ATTENTION}, timeout=40)
    # the row is written just before the workflow's task that sets SettleStatus completes
    await eventually(
        lambda: stack.api.get(f"{JOBS}/{body['workflow_id']}", headers=owner),
        lambda r: r.json().get("status") == "needs_attention",
        what="the parked deposit's SettleStatus",
    )
    return Parked(body["id"], body["workflow_id"], amount, owner, blockers)


async def unblock(stack: Stack, parked: Parked) -> None:
    async with stack.sessions.begin() as session:
        await session.execute(
            delete(LedgerEntry).where(LedgerEntry.idempotency_key.in_(parked.blockers))
        )


async def assert_credited(stack: Stack, parked: Parked) -> None:
    await stack.wait_for_deposit(parked.deposit_id, {DepositStatus.CREDITED}, timeout=40)
    assert await portfolio(stack, parked.owner) == usdc_for(stack, parked.amount)
    assert await ledger_entries_for(stack, parked.deposit_id) == 1


async def listed(
    stack: Stack, headers: dict[str, str], expected: set[str], **params: Any
) -> dict[str, Any]:
    """``GET /dead-letter`` once visibility has caught up and lists exactly ``expected``."""
    response = await eventually(
        lambda: stack.api.get(DEAD, params=params, headers=headers),
        lambda r: r.status_code == 200 and {i["id"] for i in r.json()["items"]} == expected,
        what=f"dead letters {sorted(expected)}",
    )
    body: dict[str, Any] = response.json()
    return body


async def test_parked_deposit_is_listed_retried_and_credited(stack: Stack) -> None:
    tenant = unique_tenant()
    admin = stack.auth("ops", tenant, ["admin"])
    parked = await park_deposit(stack, tenant, "amara")
    wf = parked.workflow_id

    job = (await stack.api.get(f"{JOBS}/{wf}", headers=parked.owner)).json()
    assert job["id"] == wf and job["kind"] == "mpesa_deposit" and job["tenant"] == tenant
    assert job["user"] == "amara" and job["workflow_type"] == "MpesaDeposit"
    assert job["status"] == "needs_attention" and job["temporal_status"] == "running"
    assert job["closed_at"] is None and job["started_at"]
    assert "credit failed: IdempotencyConflict" in job["error"]
    assert job["web_ui_url"].endswith(f"/namespaces/default/workflows/{wf}")
    assert isinstance(job["pending_activities"], list)

    body = await listed(stack, admin, {wf})
    (item,) = body["items"]
    assert body["count"] == 1
    assert item["error_type"] == "IdempotencyConflict" and item["step"] == "credit failed"
    assert item["kind"] == "mpesa_deposit" and item["user"] == "amara"
    assert item["status"] == "needs_attention"
    await listed(stack, admin, {wf}, kind="mpesa_deposit", error_type="IdempotencyConflict")
    await listed(stack, admin, set(), kind="ticket_purchase")
    await listed(stack, admin, set(), error_type="EvmReverted")

    stats = (await stack.api.get(f"{DEAD}/stats/by-error", headers=admin)).json()
    assert stats["total"] == 1
    assert stats["groups"] == [
        {
            "error_type": "IdempotencyConflict",
            "step": "credit failed",
            "count": 1,
            "example_id": wf,
            "example_error": item["error"],
        }
    ]

    export = await stack.api.get(f"{DEAD}/export", headers=admin)
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert lines == [item]

    await unblock(stack, parked)
    retried = await stack.api.post(f"{DEAD}/{wf}/retry", headers=admin)
    assert retried.status_code == 202, retried.text
    assert retried.json() == {"id": wf, "action": "retry", "status_url": f"{JOBS}/{wf}"}
    await assert_credited(stack, parked)
    await stack.deposit_handle(wf).result()

    done = (await stack.api.get(f"{JOBS}/{wf}", headers=admin)).json()
    assert done["status"] == "succeeded" and done["temporal_status"] == "completed"
    assert done["closed_at"] and done["error"] is None
    again = await stack.api.post(f"{DEAD}/{wf}/retry", headers=admin)
    assert again.status_code == 409
    assert "needs_attention" in again.json()["error"]["message"]
    await listed(stack, admin, set())
    empty = (await stack.api.get(f"{DEAD}/stats/by-error", headers=admin)).json()
    assert empty == {"total": 0, "groups": []}


async def test_roles_and_tenants(stack: Stack) -> None:
    tenant = unique_tenant()
    parked = await park_deposit(stack, tenant, "bola", amount=30)
    wf = parked.workflow_id
    neighbour = stack.auth("chidi", tenant)
    venue = stack.auth("venue", tenant, ["venue_admin"])
    admin = stack.auth("ops", tenant, ["admin"])
    stranger_admin = stack.auth("ops", unique_tenant(), ["admin"])

    # reading one job: the owner and the tenant's staff; another user of the tenant gets 404
    for headers in (parked.owner, venue, admin):
        assert (await stack.api.get(f"{JOBS}/{wf}", headers=headers)).status_code == 200
    assert (await stack.api.get(f"{JOBS}/{wf}", headers=neighbour)).status_code == 404
    # another tenant: 404 for everything, never 403, and its lists never show the job
    for method, path in (
        ("GET", f"{JOBS}/{wf}"),
        ("POST", f"{JOBS}/{wf}/retry"),
        ("DELETE", f"{JOBS}/{wf}"),
        ("POST", f"{DEAD}/{wf}/retry"),
    ):
        response = await stack.api.request(method, path, headers=stranger_admin)
        assert response.status_code == 404, (method, path, response.text)
    bulk = await stack.api.post(f"{DEAD}/retry", json={"ids": [wf]}, headers=stranger_admin)
    assert bulk.json()["results"] == [{"id": wf, "outcome": "not_found", "message": None}]
    await listed(stack, admin, {wf})
    assert (await stack.api.get(DEAD, headers=stranger_admin)).json()["items"] == []
    # dead letters are for admins only
    for headers in (parked.owner, venue):
        for path in (DEAD, f"{DEAD}/export", f"{DEAD}/stats/by-error"):
            assert (await stack.api.get(path, headers=headers)).status_code == 403
        assert (await stack.api.post(f"{DEAD}/{wf}/retry", headers=headers)).status_code == 403
    # changing another user's job: a venue_admin sees it but may not; a user does not see it
    assert (await stack.api.post(f"{JOBS}/{wf}/retry", headers=venue)).status_code == 403
    assert (await stack.api.delete(f"{JOBS}/{wf}", headers=venue)).status_code == 403
    assert (await stack.api.post(f"{JOBS}/{wf}/retry", headers=neighbour)).status_code == 404
    assert (await stack.api.get(f"{JOBS}/{wf}", headers=parked.owner)).json()["status"] == (
        "needs_attention"
    )

    # the owner may retry their own parked job
    await unblock(stack, parked)
    retried = await stack.api.post(f"{JOBS}/{wf}/retry", headers=parked.owner)
    assert retried.status_code == 202, retried.text
    await assert_credited(stack, parked)


async def test_bulk_retry_by_ids_and_by_kind(stack: Stack) -> None:
    tenant = unique_tenant()
    admin = stack.auth("ops", tenant, ["admin"])
    first, second, third = await asyncio.gather(
        *(park_deposit(stack, tenant, name, amount=20 + i) for i, name in enumerate("abc"))
    )
    await listed(stack, admin, {first.workflow_id, second.workflow_id, third.workflow_id})
    stats = (await stack.api.get(f"{DEAD}/stats/by-error", headers=admin)).json()
    assert stats["total"] == 3 and stats["groups"][0]["count"] == 3
    lines = (await stack.api.get(f"{DEAD}/export", headers=admin)).text.splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == sorted(
        p.workflow_id for p in (first, second, third)
    )

    for parked in (first, second, third):
        await unblock(stack, parked)
    missing = f"mpesa-deposit-{uuid.uuid4()}"
    ids = [first.workflow_id, missing, second.workflow_id, first.workflow_id]
    response = await stack.api.post(f"{DEAD}/retry", json={"ids": ids}, headers=admin)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["requested"] == 3 and body["retried"] == 2
    assert [(r["id"], r["outcome"]) for r in body["results"]] == [
        (first.workflow_id, "retried"),
        (missing, "not_found"),
        (second.workflow_id, "retried"),
    ]
    await assert_credited(stack, first)
    await assert_credited(stack, second)
    # the jobs just retried may still be listed as parked (visibility lags): a second retry of a
    # job that has resumed is reported, not sent
    await listed(stack, admin, {third.workflow_id})
    by_kind = await stack.api.post(f"{DEAD}/retry", json={"kind": "mpesa_deposit"}, headers=admin)
    assert by_kind.status_code == 200, by_kind.text
    assert by_kind.json()["results"] == [
        {"id": third.workflow_id, "outcome": "retried", "message": None}
    ]
    await assert_credited(stack, third)
    await listed(stack, admin, set())
    nothing = await stack.api.post(f"{DEAD}/retry", json={"kind": "mpesa_deposit"}, headers=admin)
    assert nothing.json() == {"requested": 0, "retried": 0, "results": []}
    done = await stack.api.post(f"{DEAD}/retry", json={"ids": [third.workflow_id]}, headers=admin)
    (result,) = done.json()["results"]
    assert result["outcome"] == "not_parked" and "succeeded" in result["message"]


async def test_cancel_is_requested_and_the_deposit_refuses_it(stack: Stack) -> None:
    """After the STK prompt a deposit refuses cancellation (README): the request is accepted,
    the workflow records the refusal and runs to its credit; a closed job is a 409."""
    tenant = unique_tenant()
    owner = stack.auth("dayo", tenant)
    response = await initiate(stack, owner, phone=PHONE_NO_CALLBACK, amount=12)
    deposit = response.json()
    wf = deposit["workflow_id"]
    payload, _, _ = await _callback_for(stack, deposit["id"])
    running = (await stack.api.get(f"{JOBS}/{wf}", headers=owner)).json()
    assert running["status"] == "running" and running["temporal_status"] == "running"
    not_parked = await stack.api.post(f"{JOBS}/{wf}/retry", headers=owner)
    assert not_parked.status_code == 409
    assert "not waiting for a retry" in not_parked.json()["error"]["message"]

    cancelled = await stack.api.delete(f"{JOBS}/{wf}", headers=owner)
    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json()["action"] == "cancel"
    await eventually(
        lambda: stack.deposit_handle(wf).query(MpesaDepositWorkflow.status),
        lambda s: s.cancel_refused,
        what="the cancellation to be refused",
    )
    assert (await stack.api.post(stack.callback_path, json=payload)).status_code == 200
    await stack.wait_for_deposit(deposit["id"], {DepositStatus.CREDITED}, timeout=40)
    await stack.deposit_handle(wf).result()
    assert await portfolio(stack, owner) == usdc_for(stack, 12)

    closed = await stack.api.delete(f"{JOBS}/{wf}", headers=owner)
    assert closed.status_code == 409
    assert "closed" in closed.json()["error"]["message"]
    admin_cancel = await stack.api.delete(
        f"{JOBS}/{wf}", headers=stack.auth("o", tenant, ["admin"])
    )
    assert admin_cancel.status_code == 409


async def test_pending_activity_attempts_are_shown(stack: Stack) -> None:
    """Daraja's STK Push Query answers 503 four times: while the query backs off, the job shows
    its attempts. (The STK push itself is tried once per activity since a push whose answer was
    lost must be resolved, not repeated: the workflow paces it, see test_mpesa_trust.)"""
    owner = stack.auth("fola", unique_tenant())
    stack.daraja_state.failures["stkpushquery"] = [4, 503]
    deposit = (await initiate(stack, owner, phone="254700000000", amount=9)).json()
    job = (
        await eventually(
            lambda: stack.api.get(f"{JOBS}/{deposit['workflow_id']}", headers=owner),
            lambda r: any(a["attempt"] >= 2 for a in r.json()["pending_activities"]),
            interval=0.05,
            what="a retried STK push in the job view",
        )
    ).json()
    (activity,) = job["pending_activities"]
    assert activity["activity_type"] == "mpesa.stk_query"
    assert activity["maximum_attempts"] == 3  # workflows/policies.stk_query
    assert activity["last_failure"] and activity["state"] in ("scheduled", "started")
    await stack.wait_for_deposit(deposit["id"], {DepositStatus.CREDITED}, timeout=40)


async def test_failed_run_shows_its_failure(stack: Stack) -> None:
    """A ticket whose mint never succeeds is refunded and its run fails: the job shows why."""
    tenant = unique_tenant()
    buyer = stack.auth("efe", tenant)
    async with httpx.AsyncClient() as http:
        await http.post(f"{stack.solana.url}/_sandbox/fail-mints", json={"count": 1})
    event = await create_event(stack, tenant)
    response = await stack.api.post(
        "/api/v1/tickets/purchase",
        json={
            "event_id": event["id"],
            "section": "FLOOR",
            "payment_method": "pm_card_visa",
            "buyer_email": "efe@example.com",
            "buyer_wallet": "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin",
        },
        headers=buyer,
    )
    assert response.status_code == 202, response.text
    wf = response.json()["workflow_id"]
    job = (
        await eventually(
            lambda: stack.api.get(f"{JOBS}/{wf}", headers=buyer),
            lambda r: r.json().get("temporal_status") == "failed",
            timeout=60,
            what="the purchase's run to fail",
        )
    ).json()
    assert job["kind"] == "ticket_purchase" and job["status"] == "failed"
    assert job["closed_at"] and "could not be minted" in job["error"]
    # the message is read through the codec: Temporal keeps failure messages encrypted
    assert stack.plain_temporal is not None
    history = await stack.plain_temporal.get_workflow_handle(wf).fetch_history()
    raw = b"".join(e.SerializeToString() for e in history.events)
    assert b"could not be minted" not in raw and b"efe@example.com" not in raw
    # a failed run is reset to its last good point: here it fails again the same way, having
    # refunded once (the refund is in the history the new run replays)
    reset = await stack.api.post(f"{JOBS}/{wf}/retry", headers=buyer)
    assert reset.status_code == 202 and reset.json()["action"] == "reset"


BAD_REQUESTS = [
    pytest.param("GET", f"{DEAD}?kind=payroll", None, "kind", id="unknown-kind"),
    pytest.param("GET", f'{DEAD}?kind=mpesa_deposit"', None, "kind", id="kind-with-quote"),
    pytest.param("GET", f"{DEAD}?limit=0", None, "limit", id="limit-zero"),
    pytest.param("GET", f"{DEAD}?limit=1001", None, "limit", id="limit-too-big"),
    pytest.param("GET", f"{DEAD}?limit=ten", None, "limit", id="limit-not-a-number"),
    pytest.param("GET", f'{DEAD}?error_type=a"b', None, "error_type", id="error-type-quote"),
    pytest.param("GET", f"{DEAD}/export?kind=nope", None, "kind", id="export-unknown-kind"),
    pytest.param("GET", f"{DEAD}/stats/by-error?kind=x", None, "kind", id="stats-unknown-kind"),
    pytest.param("GET", f"{JOBS}/mpesa-deposit-%22x", None, "job_id", id="id-with-quote"),
    pytest.param("POST", f"{JOBS}/a%20b/retry", None, "job_id", id="id-with-space"),
    pytest.param("DELETE", f"{JOBS}/{'x' * 300}", None, "job_id", id="id-too-long"),
    pytest.param("POST", f"{DEAD}/-x/retry", None, "job_id", id="id-leading-dash"),
    pytest.param("POST", f"{DEAD}/retry", {}, "ids", id="bulk-neither"),
    pytest.param(
        "POST", f"{DEAD}/retry", {"ids": ["a"], "kind": "mpesa_deposit"}, "ids", id="bulk-both"
    ),
    pytest.param("POST", f"{DEAD}/retry", {"ids": []}, "ids", id="bulk-empty"),
    pytest.param("POST", f"{DEAD}/retry", {"ids": ["a"] * 1001}, "ids", id="bulk-too-many"),
    pytest.param("POST", f"{DEAD}/retry", {"ids": ['a" OR "1']}, "ids.0", id="bulk-id-quote"),
    pytest.param("POST", f"{DEAD}/retry", {"kind": "payroll"}, "kind", id="bulk-unknown-kind"),
    pytest.param("POST", f"{DEAD}/retry", {"ids": "abc"}, "ids", id="bulk-ids-not-a-list"),
    pytest.param("POST", f"{DEAD}/retry", {"ids": ["a"], "x": 1}, "x", id="bulk-unknown-field"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), BAD_REQUESTS)
async def test_bad_input_is_422_naming_the_field(
    stack: Stack, method: str, path: str, body: Any, field: str
) -> None:
    headers = stack.auth("ops", unique_tenant(), ["admin"])
    response = await stack.api.request(method, path, json=body, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


async def test_missing_job_is_404_and_no_token_is_401(stack: Stack) -> None:
    admin = stack.auth("ops", unique_tenant(), ["admin"])
    missing = f"mpesa-deposit-{uuid.uuid4()}"
    for method, path in (
        ("GET", f"{JOBS}/{missing}"),
        ("POST", f"{JOBS}/{missing}/retry"),
        ("DELETE", f"{JOBS}/{missing}"),
        ("POST", f"{DEAD}/{missing}/retry"),
    ):
        response = await stack.api.request(method, path, headers=admin)
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["code"] == "not_found"
        assert (await stack.api.request(method, path)).status_code == 401
    for path in (DEAD, f"{DEAD}/export", f"{DEAD}/stats/by-error"):
        assert (await stack.api.get(path)).status_code == 401
    assert (
        await stack.api.post(f"{DEAD}/retry", json={"kind": "mpesa_deposit"})
    ).status_code == 401


async def test_tenants_and_subjects_of_any_usual_shape_are_queried_safely(stack: Stack) -> None:
    odd = stack.auth("auth0|42", f"Acme Corp+{uuid.uuid4().hex[:6]}", ["admin"])
    response = await stack.api.get(DEAD, headers=odd)
    assert response.status_code == 200
    assert response.json() == {"items": [], "count": 0, "unmatched_payments": []}
    hostile = stack.auth("ops", 'x" OR SettleTenant != "', ["admin"])
    assert (await stack.api.get(DEAD, headers=hostile)).status_code == 401


async def test_openapi_documents_jobs_and_dead_letters(stack: Stack) -> None:
    spec = (await stack.api.get("/openapi.json")).json()
    paths = spec["paths"]
    assert set(paths[f"{JOBS}/{{job_id}}"]) == {"get", "delete"}
    assert "post" in paths[f"{JOBS}/{{job_id}}/retry"]
    assert "get" in paths[DEAD] and "post" in paths[f"{DEAD}/retry"]
    assert "post" in paths[f"{DEAD}/{{job_id}}/retry"]
    assert "get" in paths[f"{DEAD}/stats/by-error"]
    export = paths[f"{DEAD}/export"]["get"]["responses"]["200"]["content"]
    assert "application/x-ndjson" in export
    assert {"404", "409", "403"} <= set(paths[f"{JOBS}/{{job_id}}/retry"]["post"]["responses"])


async def test_temporal_down_is_503(database_url: str) -> None:
    settings = stack_settings(
        database_url, "http://127.0.0.1:9", "http://127.0.0.1:9", temporal_address="127.0.0.1:9"
    )
    server = await serve(create_app(settings))
    token = issue_token(settings, subject="ops", tenant="down", roles=["admin"])
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            for method, path in (
                ("GET", f"{JOBS}/mpesa-deposit-x"),
                ("POST", f"{JOBS}/mpesa-deposit-x/retry"),
                ("GET", DEAD),
                ("GET", f"{DEAD}/stats/by-error"),
                ("GET", f"{DEAD}/export"),
            ):
                response = await http.request(method, path, headers=headers)
                assert response.status_code == 503, (method, path, response.text)
                assert response.json()["error"]["code"] == "service_unavailable"
    finally:
        await server.stop()


async def test_a_terminated_job_is_reset_to_its_last_good_point_and_completes(
    stack: Stack,
) -> None:
    """Terminated while awaiting its callback, a deposit is reset by POST /jobs/<id>/retry: the
    new run picks up where the old one stood, and the callback that then arrives credits it."""
    tenant = unique_tenant()
    owner = stack.auth("rex", tenant)
    response = await initiate(stack, owner, phone=PHONE_NO_CALLBACK, amount=55)
    assert response.status_code == 202, response.text
    deposit_id, workflow_id = response.json()["id"], response.json()["workflow_id"]
    payload, _, _ = await _callback_for(stack, deposit_id)
    handle = stack.temporal.get_workflow_handle(workflow_id)
    first_run = (await handle.describe()).run_id
    await handle.terminate(reason="operator error")  # as from the Web UI or the CLI
    job = await stack.api.get(f"{JOBS}/{workflow_id}", headers=owner)
    assert job.json()["temporal_status"] == "terminated"
    decision = job.json()["operator_decision"]
    assert decision["action"] == "terminated" and decision["reason"] == "operator error"
    assert decision["by"] == stack.temporal.identity and decision["at"]

    # the operator's decision stands against the owner; an admin may reset it
    refused = await stack.api.post(f"{JOBS}/{workflow_id}/retry", headers=owner)
    assert refused.status_code == 403 and refused.json()["error"]["field"] == "job_id"
    assert "terminated" in refused.json()["error"]["message"]
    assert (await handle.describe()).run_id == first_run
    admin = stack.auth("ops", tenant, ["admin"])
    retried = await stack.api.post(f"{JOBS}/{workflow_id}/retry", headers=admin)
    assert retried.status_code == 202, retried.text
    assert retried.json()["action"] == "reset"
    assert (await handle.describe()).run_id != first_run
    assert (await stack.api.post(stack.callback_path, json=payload)).status_code == 200
    await stack.wait_for_deposit(deposit_id, {DepositStatus.CREDITED}, timeout=40)
    assert await ledger_entries_for(stack, deposit_id) == 1

    # a completed job is not retried
    done = await stack.api.post(f"{JOBS}/{workflow_id}/retry", headers=owner)
    assert done.status_code == 409 and done.json()["error"]["field"] == "job_id"


async def test_an_admins_terminate_stands_and_names_the_admin(stack: Stack) -> None:
    tenant = unique_tenant()
    owner = stack.auth("tia", tenant)
    response = await initiate(stack, owner, phone=PHONE_NO_CALLBACK, amount=45)
    assert response.status_code == 202, response.text
    deposit_id, workflow_id = response.json()["id"], response.json()["workflow_id"]
    await stack.wait_for_deposit(deposit_id, {DepositStatus.AWAITING_PAYMENT})
    reason = {"reason": "customer asked by phone; refunded by hand"}
    for who in (owner, stack.auth("ven", tenant, ["venue_admin"])):
        refused = await stack.api.post(f"{JOBS}/{workflow_id}/terminate", json=reason, headers=who)
        assert refused.status_code == 403, refused.text
    assert (await stack.api.get(f"{JOBS}/{workflow_id}", headers=owner)).json()[
        "temporal_status"
    ] == "running"
    other_admin = stack.auth("ops", unique_tenant(), ["admin"])
    other = await stack.api.post(
        f"{JOBS}/{workflow_id}/terminate", json=reason, headers=other_admin
    )
    assert other.status_code == 404
    empty = await stack.api.post(
        f"{JOBS}/{workflow_id}/terminate",
        json={"reason": ""},
        headers=stack.auth("ops", tenant, ["admin"]),
    )
    assert empty.status_code == 422 and empty.json()["error"]["field"] == "reason"

    admin = stack.auth("ops", tenant, ["admin"])
    done = await stack.api.post(f"{JOBS}/{workflow_id}/terminate", json=reason, headers=admin)
    assert done.status_code == 202 and done.json()["action"] == "terminate"
    job = (await stack.api.get(f"{JOBS}/{workflow_id}", headers=owner)).json()
    assert job["temporal_status"] == "terminated"
    assert job["operator_decision"]["action"] == "terminated"
    assert job["operator_decision"]["reason"] == reason["reason"]
    assert job["operator_decision"]["by"] == "ops"
    refused = await stack.api.post(f"{JOBS}/{workflow_id}/retry", headers=owner)
    assert refused.status_code == 403 and "by ops" in refused.json()["error"]["message"]
    again = await stack.api.post(f"{JOBS}/{workflow_id}/terminate", json=reason, headers=admin)
    assert again.status_code == 409


async def test_an_abandoned_job_stands_and_shows_who_and_why(stack: Stack) -> None:
    tenant = unique_tenant()
    admin = stack.auth("ops", tenant, ["admin"])
    parked = await park_deposit(stack, tenant, "abe")
    wf = parked.workflow_id
    reason = {"reason": "paid back over M-Pesa B2C by hand"}
    refused = await stack.api.post(f"{JOBS}/{wf}/abandon", json=reason, headers=parked.owner)
    assert refused.status_code == 403

    abandoned = await stack.api.post(f"{JOBS}/{wf}/abandon", json=reason, headers=admin)
    assert abandoned.status_code == 202, abandoned.text
    await stack.wait_for_deposit(parked.deposit_id, {DepositStatus.ABANDONED}, timeout=40)
    job = (
        await eventually(
            lambda: stack.api.get(f"{JOBS}/{wf}", headers=parked.owner),
            lambda r: r.json().get("temporal_status") == "completed",
            what="the abandoned deposit to end",
        )
    ).json()
    assert job["status"] == "abandoned"
    assert job["operator_decision"]["action"] == "abandoned"
    assert job["operator_decision"]["reason"] == reason["reason"]
    assert job["operator_decision"]["by"] == "ops"
    owner_retry = await stack.api.post(f"{JOBS}/{wf}/retry", headers=parked.owner)
    assert (
        owner_retry.status_code == 403
        and "abandoned by ops" in owner_retry.json()["error"]["message"]
    )
    # the admin is not refused for the decision: an ended (completed) job has nothing to retry
    admin_retry = await stack.api.post(f"{JOBS}/{wf}/retry", headers=admin)
    assert admin_retry.status_code == 409
    not_parked = await stack.api.post(f"{JOBS}/{wf}/abandon", json=reason, headers=admin)
    assert not_parked.status_code == 409
    await unblock(stack, parked)
    assert await ledger_entries_for(stack, parked.deposit_id) == 0
