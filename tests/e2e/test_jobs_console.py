"""The operator's console over HTTP (issue 15 §2-§4): find any job, understand it, act on it.

Against the real dev server (with ``SettleRefs`` registered), worker, sandboxes and PostgreSQL.
Visibility is eventually consistent, so listings are polled until they show what is expected.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from domain.mpesa import DepositStatus
from tests.e2e.test_credentials import CID_V1, data_hash
from tests.e2e.test_deposit_intents import create as create_intent
from tests.e2e.test_deposit_intents import until_status
from tests.e2e.test_jobs_dead_letter import park_deposit, unblock
from tests.e2e.test_mpesa_deposit_api import initiate
from tests.e2e.test_tickets import body as ticket_body
from tests.e2e.test_tickets import until, wallet
from tests.e2e.test_verification_jobs import document, finished, published, submit
from tests.fixtures.events import create_event
from tests.fixtures.stack import Stack, eventually, unique_tenant
from tests.integration.test_dead_letter_cli import cli

pytestmark = pytest.mark.usefixtures("balanced_ledger")

JOBS = "/api/v1/jobs"


async def ids(stack: Stack, headers: dict[str, str], **params: Any) -> set[str]:
    response = await stack.api.get(JOBS, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return {item["id"] for item in response.json()["items"]}


async def listed(stack: Stack, headers: dict[str, str], expected: set[str], **params: Any) -> None:
    """``GET /api/v1/jobs`` with ``params`` lists exactly ``expected`` (once visibility caught up)."""
    await eventually(
        lambda: ids(stack, headers, **params),
        lambda found: found == expected,
        what=f"jobs {sorted(expected)} for {params}",
    )


async def found_by_ref(stack: Stack, headers: dict[str, str], ref: str, workflow_id: str) -> None:
    await listed(stack, headers, {workflow_id}, ref=ref)


async def credited_deposit(stack: Stack, headers: dict[str, str]) -> tuple[str, str]:
    response = await initiate(stack, headers)
    assert response.status_code == 202, response.text
    body = response.json()
    await stack.wait_for_deposit(body["id"], {DepositStatus.CREDITED}, timeout=40)
    # the row is credited a moment before the run completes: wait for its end too
    await stack.temporal.get_workflow_handle(body["workflow_id"]).result()
    return body["id"], body["workflow_id"]


async def test_find_any_job_across_kinds_with_filters_scoped_to_the_tenant(
    stack: Stack, dev_env: WorkflowEnvironment
) -> None:
    tenant, other = unique_tenant(), unique_tenant()
    amy, bob = stack.auth("amy", tenant), stack.auth("bob", tenant)
    admin = stack.auth("ops", tenant, ["admin"])
    before = datetime.now(UTC) - timedelta(seconds=5)
    deposit_id, deposit_wf = await credited_deposit(stack, amy)
    intent = await stack.api.post(
        "/api/v1/deposit/intent/create", json={"amount": "5.00", "chain": "base"}, headers=bob
    )
    assert intent.status_code == 201, intent.text
    intent_wf = intent.json()["workflow_id"]
    # the same subject in another tenant: never seen from this one
    _, elsewhere_wf = await credited_deposit(stack, stack.auth("amy", other))

    both = {deposit_wf, intent_wf}
    await listed(stack, admin, both)
    await listed(stack, stack.auth("box", tenant, ["venue_admin"]), both)
    await listed(stack, amy, {deposit_wf})  # a user sees their own jobs only
    await listed(stack, bob, {intent_wf})
    await listed(stack, stack.auth("amy", other), {elsewhere_wf})
    await listed(stack, admin, {deposit_wf}, kind="mpesa_deposit")
    await listed(stack, admin, {intent_wf}, kind="deposit_watch")
    await listed(stack, admin, set(), kind="ticket_purchase")
    await listed(stack, admin, {deposit_wf}, status="succeeded")
    await listed(stack, admin, {intent_wf}, status="running")
    await listed(stack, admin, {intent_wf}, user="bob")
    await listed(stack, amy, set(), user="bob")  # a user's filter cannot widen their scope
    await listed(stack, admin, both, since=before.isoformat())
    await listed(stack, admin, set(), since=(datetime.now(UTC) + timedelta(hours=1)).isoformat())
    await listed(stack, admin, set(), until=before.isoformat())
    # platform_admin reads every tenant; the tenant filter narrows it
    await listed(stack, stack.platform_admin(), both, tenant=tenant)
    await listed(stack, stack.platform_admin(), {elsewhere_wf}, tenant=other)
    await listed(stack, admin, set(), tenant=other)  # not a way into another tenant

    first = (await stack.api.get(JOBS, params={"limit": 1}, headers=admin)).json()
    assert len(first["items"]) == 1 and first["next_cursor"]
    second = (
        await stack.api.get(
            JOBS, params={"limit": 1, "cursor": first["next_cursor"]}, headers=admin
        )
    ).json()
    assert {first["items"][0]["id"], second["items"][0]["id"]} == both
    forged = await stack.api.get(JOBS, params={"cursor": "AAAA" + "A" * 40}, headers=admin)
    assert forged.status_code == 422 and forged.json()["error"]["field"] == "cursor"
    reused = await stack.api.get(
        JOBS, params={"cursor": first["next_cursor"], "kind": "mpesa_deposit"}, headers=admin
    )
    assert reused.status_code == 422  # a cursor belongs to its own listing
    backwards = await stack.api.get(
        JOBS, params={"since": datetime.now(UTC).isoformat(), "until": before.isoformat()},
        headers=admin,
    )  # fmt: skip
    assert backwards.status_code == 422 and backwards.json()["error"]["field"] == "since"
    quoted = await stack.api.get(JOBS, params={"ref": 'x" OR 1=1'}, headers=admin)
    assert quoted.status_code == 422 and quoted.json()["error"]["field"] == "ref"

    # every id the deposit learned finds it, and only from its own tenant
    row = await stack.deposit_row(deposit_id)
    assert row is not None and row.checkout_request_id and row.mpesa_receipt and row.usdc_tx_hash
    for ref in (row.checkout_request_id, row.mpesa_receipt, row.usdc_tx_hash):
        await found_by_ref(stack, admin, ref, deposit_wf)
    await listed(stack, stack.auth("ops", other, ["admin"]), set(), ref=row.checkout_request_id)
    await listed(stack, stack.auth("amy", other), set(), ref=row.mpesa_receipt)
    # the README's CLI query finds it too
    found = await cli(
        dev_env, "workflow", "list", "--query", f'SettleRefs="{row.checkout_request_id}"'
    )
    assert deposit_wf in found and elsewhere_wf not in found
    # no personal data in the references Temporal holds in clear
    described = await stack.temporal.get_workflow_handle(deposit_wf).describe()
    refs = described.raw_description.workflow_execution_info.search_attributes.indexed_fields
    assert b"254708374149" not in refs["SettleRefs"].data
    await stack.temporal.get_workflow_handle(intent_wf).terminate("test over")


async def test_a_job_shows_input_and_result_to_admins_only(stack: Stack) -> None:
    tenant = unique_tenant()
    amy = stack.auth("amy", tenant)
    deposit_id, wf = await credited_deposit(stack, amy)
    for headers in (stack.auth("ops", tenant, ["admin"]), stack.platform_admin()):
        job = (await stack.api.get(f"{JOBS}/{wf}", headers=headers)).json()
        assert job["input"]["deposit_id"] == deposit_id
        assert job["input"]["amount_minor"] == 15000
        assert job["result"]["deposit_id"] == deposit_id
        assert job["result"]["status"] == "credited" and job["result"]["usdc_tx_hash"]
        assert job["timeline_url"] == f"{JOBS}/{wf}/timeline"
    for headers in (amy, stack.auth("box", tenant, ["venue_admin"])):
        job = (await stack.api.get(f"{JOBS}/{wf}", headers=headers)).json()
        assert job["status"] == "succeeded"
        assert job["input"] is None and job["result"] is None
    stranger = stack.auth("amy", unique_tenant())
    assert (await stack.api.get(f"{JOBS}/{wf}/timeline", headers=stranger)).status_code == 404


async def test_the_timeline_of_a_completed_deposit(stack: Stack) -> None:
    tenant = unique_tenant()
    amy = stack.auth("amy", tenant)
    deposit_id, wf = await credited_deposit(stack, amy)
    row = await stack.deposit_row(deposit_id)
    assert row is not None
    response = await stack.api.get(f"{JOBS}/{wf}/timeline", headers=amy)
    assert response.status_code == 200, response.text
    entries = response.json()["entries"]
    times = [e["at"] for e in entries]
    assert times == sorted(times)  # newest last
    assert entries[0]["type"] == "started" and entries[0]["step"] == "MpesaDeposit"
    assert entries[-1]["type"] in ("completed", "log")
    assert any(e["type"] == "completed" for e in entries)
    done = [e for e in entries if e["type"] == "activity_completed"]
    steps = [e["step"] for e in done]
    for step in ("mpesa.stk_push", "deposits.record_stk_push", "deposits.credit"):
        assert step in steps, steps
    push = next(e for e in done if e["step"] == "mpesa.stk_push")
    assert push["attempt"] == 1 and push["duration_ms"] is not None and push["duration_ms"] >= 0
    assert steps.index("mpesa.stk_push") < steps.index("deposits.credit")
    assert any(e["type"] == "signal" and e["step"] == "mpesa_callback" for e in entries)
    assert [e["message"] for e in entries if e["type"] == "status"][-1] == "succeeded"
    logs = [e for e in entries if e["source"] == "log"]
    messages = " | ".join(e["message"] for e in logs)
    assert f"CheckoutRequestID {row.checkout_request_id}" in messages
    assert f"M-Pesa receipt {row.mpesa_receipt}" in messages
    assert "portfolio credited: ledger entry" in messages
    assert "254708374149" not in messages  # no phone in the log lines
    credit_line = next(e for e in logs if e["message"].startswith("portfolio credited"))
    assert credit_line["step"] == "deposits.credit" and credit_line["attempt"] == 1


async def test_abandon_by_an_admin_shows_in_the_timeline_and_is_refused_to_the_owner(
    stack: Stack,
) -> None:
    tenant = unique_tenant()
    admin = stack.auth("ops", tenant, ["admin"])
    parked = await park_deposit(stack, tenant, "kofi")
    wf = parked.workflow_id
    try:
        await listed(stack, admin, {wf}, status="needs_attention")
        reason = {"reason": "paid back by hand"}
        refused = await stack.api.post(f"{JOBS}/{wf}/abandon", json=reason, headers=parked.owner)
        assert refused.status_code == 403
        venue = stack.auth("box", tenant, ["venue_admin"])
        by_venue = await stack.api.post(f"{JOBS}/{wf}/abandon", json=reason, headers=venue)
        assert by_venue.status_code == 403
        done = await stack.api.post(f"{JOBS}/{wf}/abandon", json=reason, headers=admin)
        assert done.status_code == 202, done.text
        await stack.wait_for_deposit(parked.deposit_id, {DepositStatus.ABANDONED}, timeout=40)
        # the row is written just before the workflow's task that sets SettleStatus completes
        timeline = await eventually(
            lambda: stack.api.get(f"{JOBS}/{wf}/timeline", headers=admin),
            lambda r: any(e["type"] == "completed" for e in r.json()["entries"]),
            what="the abandoned deposit's run to end",
        )
        entries = timeline.json()["entries"]
        (action,) = [e for e in entries if e["type"] == "operator_action"]
        assert action["step"] == "abandon" and action["by"] == "ops"
        failed = [e for e in entries if e["type"] == "activity_failed"]
        assert failed and failed[-1]["step"] == "deposits.credit"
        assert failed[-1]["error_type"] == "IdempotencyConflict"
        assert "was already used for different postings" in failed[-1]["message"]
        assert [e["message"] for e in entries if e["type"] == "status"][-2:] == [
            "needs_attention",
            "abandoned",
        ]
        await listed(stack, admin, {wf}, status="abandoned")
    finally:
        await unblock(stack, parked)


async def test_post_jobs_starts_refunds_transfers_and_anchors(stack: Stack) -> None:
    tenant = unique_tenant()
    buyer = stack.auth("ben", tenant)
    venue = stack.auth("box", tenant, ["venue_admin"])
    admin = stack.auth("ops", tenant, ["admin"])
    event = await create_event(stack, tenant)
    bought = await stack.api.post(
        JOBS, json={"type": "ticket_purchase", "data": ticket_body(event["id"])}, headers=buyer
    )
    assert bought.status_code == 202, bought.text
    purchase_id, purchase_wf = bought.json()["id"], bought.json()["workflow_id"]
    done = await until(
        stack, purchase_id, buyer, lambda v: v["status"] == "completed", "completion"
    )
    await found_by_ref(stack, admin, done["payment_intent"], purchase_wf)
    await found_by_ref(stack, admin, done["mint"], purchase_wf)

    # a transfer by its buyer, with a priority
    target = wallet()
    moved = await stack.api.post(
        JOBS,
        json={
            "type": "ticket_transfer",
            "data": {"purchase_id": purchase_id, "to_wallet": target},
            "options": {"priority": 2},
        },
        headers=buyer,
    )
    assert moved.status_code == 202, moved.text
    transfer_wf = moved.json()["workflow_id"]
    assert moved.json()["type"] == "ticket_transfer"
    info = (await stack.temporal.get_workflow_handle(transfer_wf).describe()).raw_description
    assert info.workflow_execution_info.priority.priority_key == 2
    view = await until(
        stack, purchase_id, buyer, lambda v: v["owner_wallet"] == target, "the transfer"
    )
    await found_by_ref(stack, admin, view["transfers"][0]["signature"], transfer_wf)

    # a refund: the venue's, as its route says (a buyer is refused, nothing starts)
    refused = await stack.api.post(
        JOBS,
        json={"type": "ticket_refund", "data": {"purchase_id": purchase_id, "amount": 500}},
        headers=buyer,
    )
    assert refused.status_code == 403
    refund = await stack.api.post(
        JOBS,
        json={"type": "ticket_refund", "data": {"purchase_id": purchase_id, "amount": 500}},
        headers=venue,
    )
    assert refund.status_code == 202, refund.text
    refund_wf = refund.json()["workflow_id"]
    assert refund_wf.startswith("refund-")
    refunded = await until(
        stack,
        purchase_id,
        buyer,
        lambda v: v["refunds"] and v["refunds"][0]["status"] == "succeeded",
        "the refund",
    )
    await found_by_ref(stack, admin, refunded["refunds"][0]["stripe_refund_id"], refund_wf)
    await listed(stack, admin, {refund_wf}, kind="ticket_refund")
    missing = await stack.api.post(
        JOBS,
        json={"type": "ticket_refund", "data": {"purchase_id": str(uuid.uuid4())}},
        headers=venue,
    )
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "data.purchase_id"

    # a credential anchor, single, then a batch (which takes no delay or priority)
    digest = data_hash()
    single = await stack.api.post(
        JOBS,
        json={
            "type": "credential_anchor",
            "data": {"credential_id": "cert-1", "data_hash": digest, "ipfs_cid": CID_V1,
                     "batch": False},
            "options": {"delay": 0, "priority": 1},
        },
        headers=admin,
    )  # fmt: skip
    assert single.status_code == 202, single.text
    anchor_wf = single.json()["workflow_id"]
    assert single.json()["id"] == "cert-1" and anchor_wf.startswith("credential-")
    anchored = await eventually(
        lambda: stack.api.get("/api/v1/credentials/cert-1/anchor", headers=admin),
        lambda r: r.json().get("status") == "confirmed",
        timeout=60,
        what="the anchor job",
    )
    for ref in ("cert-1", digest, anchored.json()["tx_hash"]):
        await found_by_ref(stack, admin, ref, anchor_wf)
    item = {"credential_id": "cert-2", "data_hash": data_hash(), "ipfs_cid": CID_V1}
    batch_data = {"items": [item]}
    delayed = await stack.api.post(
        JOBS,
        json={"type": "credential_anchor_batch", "data": batch_data, "options": {"delay": 60}},
        headers=admin,
    )
    assert delayed.status_code == 422 and delayed.json()["error"]["field"] == "options"
    batch = await stack.api.post(
        JOBS, json={"type": "credential_anchor_batch", "data": batch_data}, headers=admin
    )
    assert batch.status_code == 202, batch.text
    (result,) = batch.json()["results"]
    assert result["credential_id"] == "cert-2" and result["anchor"]["status"] == "pending"
    assert batch.json()["workflow_id"].startswith("anchor-batcher-")
    await eventually(
        lambda: stack.api.get("/api/v1/credentials/cert-2/anchor", headers=admin),
        lambda r: r.json().get("status") == "confirmed",
        timeout=60,
        what="the batched anchor job",
    )


async def test_refs_of_an_on_chain_deposit_and_of_a_compensated_purchase(stack: Stack) -> None:
    tenant = unique_tenant()
    olga = stack.auth("olga", tenant)
    admin = stack.auth("ops", tenant, ["admin"])
    intent = (await create_intent(stack, olga, "3.00")).json()
    receipt = await stack.chain.pay(intent["address"], 3_000_000)
    await until_status(stack, intent["id"], olga, {"paid"})
    await found_by_ref(stack, admin, receipt["transactionHash"], intent["workflow_id"])
    entries = (
        await stack.api.get(f"{JOBS}/{intent['workflow_id']}/timeline", headers=olga)
    ).json()["entries"]
    assert any(
        e["source"] == "log" and e["message"].startswith("credited: 3000000 USDC base units")
        for e in entries
    )

    # a mint that never succeeds: the purchase refunds itself, and its refund ids find it
    event = await create_event(stack, tenant)
    async with httpx.AsyncClient() as http:
        await http.post(f"{stack.solana.url}/_sandbox/fail-mints", json={"count": 1})
    bought = await stack.api.post(
        "/api/v1/tickets/purchase", json=ticket_body(event["id"]), headers=olga
    )
    assert bought.status_code == 202, bought.text
    refunded = await until(
        stack, bought.json()["id"], olga, lambda v: v["status"] == "refunded", "the refund", 40
    )
    (refund,) = refunded["refunds"]
    for ref in (refund["id"], refund["stripe_refund_id"], refunded["payment_intent"]):
        await found_by_ref(stack, admin, ref, bought.json()["workflow_id"])


async def test_a_verification_job_is_found_by_its_content_hash(stack: Stack) -> None:
    tenant = unique_tenant()
    headers = stack.auth("verifier", tenant)
    data = document()
    content = await published(stack, data)
    response = await submit(stack, headers, data, content.manifest_uri)
    assert response.status_code == 202, response.text
    job = await finished(stack, response.json()["jobId"], headers)
    workflow_id = f"verification-{job['jobId']}"
    await found_by_ref(stack, headers, content.content_hash, workflow_id)
    timeline = await eventually(
        lambda: stack.api.get(f"{JOBS}/{workflow_id}/timeline", headers=headers),
        lambda r: any(e["type"] == "completed" for e in r.json()["entries"]),
        what="the verification's run to end",
    )
    lines = [e["message"] for e in timeline.json()["entries"] if e["source"] == "log"]
    assert any(f"content hash {content.content_hash}" in line for line in lines), lines
