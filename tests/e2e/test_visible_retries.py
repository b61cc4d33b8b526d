"""Nothing retries forever in silence (issue 14 §3), on the real dev server, worker and PostgreSQL.

- Two deposits given the same M-Pesa receipt: the second one's bookkeeping write meets the unique
  constraint on the receipt. It used to retry every 30 s forever, ``running`` with no error; now
  it parks at once with the constraint in its reason, and an alert.
- A step failing more than ``STEP_ALERT_AFTER_ATTEMPTS`` times (3 in the stack; here a trigger
  refuses the write with a huge message) shows its attempt and last error in the jobs API, as
  ``SettleStatus=retrying``, in the dead-letter listing and as one alert from the Monitor; when it
  succeeds the deposit is credited, back to ``running`` first, and the alert clears.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import select, text

from domain.mpesa import DepositStatus
from domain.retries import STEP_ALERT, STEP_PARKED_ALERT, STEP_RETRYING_SIGNAL, StepReport
from runtime.failures import BUDGET
from runtime.schedules import monitor_input
from store.models import Alert
from tests.e2e.test_jobs_dead_letter import _callback_for
from tests.e2e.test_monitor_alerts import run_monitor
from tests.e2e.test_mpesa_deposit_api import PHONE_NO_CALLBACK, PHONE_OK, initiate
from tests.e2e.test_tickets import buy, intents_for, until
from tests.fixtures.events import create_event
from tests.fixtures.stack import Stack, eventually, unique_tenant

JOBS = "/api/v1/jobs"
DEAD = "/api/v1/dead-letter"


async def open_alerts(stack: Stack, condition: str, reference_prefix: str) -> list[Alert]:
    async with stack.sessions() as session:
        rows = await session.execute(
            select(Alert).where(
                Alert.condition == condition,
                Alert.status == "open",
                Alert.value.startswith(reference_prefix),
            )
        )
        return list(rows.scalars())


async def job(stack: Stack, workflow_id: str, headers: dict[str, str]) -> dict[str, Any]:
    response = await stack.api.get(f"{JOBS}/{workflow_id}", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_duplicate_receipt_parks_at_once_with_the_constraint_and_an_alert(
    stack: Stack,
) -> None:
    tenant = unique_tenant()
    owner = stack.auth("wanjiru", tenant)
    admin = stack.auth("ops", tenant, ["admin"])
    first = (await initiate(stack, owner, phone=PHONE_OK, amount=31)).json()
    credited = await stack.wait_for_deposit(first["id"], {DepositStatus.CREDITED}, timeout=40)
    receipt = credited.mpesa_receipt
    assert receipt

    # the second payment comes back from M-Pesa with the first one's receipt (same amount: the
    # Transaction Status check by receipt agrees, so only the database can refuse it)
    second = (await initiate(stack, owner, phone=PHONE_NO_CALLBACK, amount=31)).json()
    row = await stack.wait_for_deposit(second["id"], {DepositStatus.AWAITING_PAYMENT})
    assert row.checkout_request_id
    stack.daraja_state.transactions[row.checkout_request_id].receipt = receipt
    payload, _, sent_receipt = await _callback_for(stack, second["id"])
    assert sent_receipt == receipt
    assert (await stack.api.post(stack.callback_path, json=payload)).status_code == 200

    parked = await stack.wait_for_deposit(second["id"], {DepositStatus.NEEDS_ATTENTION}, timeout=30)
    assert parked.mpesa_receipt is None  # the first deposit keeps its receipt
    reason = parked.failure_reason or ""
    assert reason.startswith("recording the deposit's status failed: UniqueViolation: ")
    assert "mpesa_receipt" in reason and receipt in reason
    assert "[SQL:" not in reason and "INSERT" not in reason and "UPDATE" not in reason

    view = await eventually(
        lambda: job(stack, second["workflow_id"], owner),
        lambda j: j["status"] == "needs_attention",
        what="the parked deposit's SettleStatus",
    )
    assert view["error"] == reason
    # parked at once: the write was tried once, not retried
    assert not any(a["attempt"] > 1 for a in view["pending_activities"])
    failures = [
        e.activity_task_failed_event_attributes.failure.application_failure_info
        async for e in stack.handle(second["workflow_id"]).fetch_history_events()
        if e.HasField("activity_task_failed_event_attributes")
    ]
    (refused,) = [f for f in failures if f.type == "UniqueViolation"]
    assert refused.non_retryable

    (alert,) = await open_alerts(stack, STEP_PARKED_ALERT, second["id"])
    assert alert.tenant == tenant and "UniqueViolation" in alert.message

    listed = await eventually(
        lambda: stack.api.get(DEAD, headers=admin),
        lambda r: any(i["id"] == second["workflow_id"] for i in r.json()["items"]),
        what="the parked deposit in the dead letters",
    )
    (item,) = [i for i in listed.json()["items"] if i["id"] == second["workflow_id"]]
    assert item["error_type"] == "UniqueViolation"
    assert item["step"] == "recording the deposit's status failed"

    abandoned = await stack.api.post(
        f"{JOBS}/{second['workflow_id']}/abandon",
        json={"reason": "a duplicate receipt from M-Pesa"},
        headers=admin,
    )
    assert abandoned.status_code == 202
    await stack.wait_for_deposit(second["id"], {DepositStatus.ABANDONED})


REFUSAL_HEAD = "settle test: the paid status is refused"
REFUSAL_TAIL = "end of the refusal"


async def refuse_paid_status(stack: Stack, deposit_id: str) -> None:
    """A trigger refusing this deposit's ``paid`` write with a 30,000-character message (not a
    constraint: retryable), as a database whose error quotes a whole statement would."""
    name = f"refuse_{deposit_id.replace('-', '')[:20]}"
    async with stack.sessions.begin() as session:
        await session.execute(
            text(
                f"CREATE FUNCTION {name}() RETURNS trigger AS $$ BEGIN "
                f"RAISE EXCEPTION '%', '{REFUSAL_HEAD} ' || repeat('padding ', 3750) || "
                f"'{REFUSAL_TAIL}'; END $$ LANGUAGE plpgsql"
            )
        )
        await session.execute(
            text(
                f"CREATE TRIGGER {name} BEFORE UPDATE ON mpesa_deposits FOR EACH ROW "
                f"WHEN (NEW.id = '{deposit_id}' AND NEW.status = 'paid') EXECUTE FUNCTION {name}()"
            )
        )


async def allow_paid_status(stack: Stack, deposit_id: str) -> None:
    name = f"refuse_{deposit_id.replace('-', '')[:20]}"
    async with stack.sessions.begin() as session:
        await session.execute(text(f"DROP TRIGGER {name} ON mpesa_deposits"))
        await session.execute(text(f"DROP FUNCTION {name}()"))


async def test_a_step_failing_again_and_again_is_shown_listed_and_alerted(stack: Stack) -> None:
    assert stack.settings.step_alert_after_attempts == 3
    tenant = unique_tenant()
    owner = stack.auth("kamau", tenant)
    admin = stack.auth("ops", tenant, ["admin"])
    deposit = (await initiate(stack, owner, phone=PHONE_NO_CALLBACK, amount=17)).json()
    wf = deposit["workflow_id"]
    await stack.wait_for_deposit(deposit["id"], {DepositStatus.AWAITING_PAYMENT})
    await refuse_paid_status(stack, deposit["id"])
    try:
        payload, _, _ = await _callback_for(stack, deposit["id"])
        assert (await stack.api.post(stack.callback_path, json=payload)).status_code == 200

        # after 3 failed attempts: retrying, with the step, its attempt and its last error
        view = await eventually(
            lambda: job(stack, wf, owner),
            lambda j: j["status"] == "retrying" and j["retrying_step"] is not None,
            timeout=30,
            what="the deposit to show its failing step",
        )
        step = view["retrying_step"]
        assert step["step"] == "deposits.set_outcome"
        assert step["attempt"] > 3 and step["failed_attempts"] >= 3
        last_error = step["last_error"]
        assert REFUSAL_HEAD in last_error and "characters cut" in last_error
        assert "Failure exceeds size limit" not in last_error
        assert len(last_error) < 2 * BUDGET
        assert view["error"] and REFUSAL_HEAD in view["error"]
        (pending,) = [a for a in view["pending_activities"] if a["attempt"] > 3]
        assert REFUSAL_HEAD in pending["last_failure"]
        waiting = await stack.deposit_row(deposit["id"])
        assert waiting is not None and waiting.status == DepositStatus.AWAITING_PAYMENT

        # Temporal holds the failure whole enough to read, under its 4 KiB limit
        raw = (await stack.handle(wf).describe()).raw_description.pending_activities
        (stuck,) = [a for a in raw if a.attempt > 3]
        assert stuck.last_failure.ByteSize() < 4096
        assert stuck.last_failure.message != "Failure exceeds size limit."

        listed = await eventually(
            lambda: stack.api.get(DEAD, headers=admin),
            lambda r: any(i["id"] == wf for i in r.json()["items"]),
            what="the retrying deposit in the dead-letter listing",
        )
        (item,) = [i for i in listed.json()["items"] if i["id"] == wf]
        assert item["status"] == "retrying" and item["step"] == "deposits.set_outcome"
        assert item["attempt"] > 3 and REFUSAL_HEAD in item["error"]
        # not parked: a retry is refused, Temporal is retrying it
        refused = await stack.api.post(f"{DEAD}/{wf}/retry", headers=admin)
        assert refused.status_code == 409

        request = monitor_input(stack.settings)
        # the Monitor finds it through visibility, which may lag describe by a moment
        first = await eventually(
            lambda: run_monitor(stack, request),
            lambda result: any(
                a.condition == STEP_ALERT and wf in a.message for a in result.changes.raised
            ),
            interval=0.5,
            what="the Monitor to raise the stuck step's alert",
        )
        (raised,) = [
            a for a in first.changes.raised if a.condition == STEP_ALERT and wf in a.message
        ]
        assert "deposits.set_outcome" in raised.message and REFUSAL_HEAD in raised.message
        again = await run_monitor(stack, request)  # deduplicated: one alert per stuck step
        assert not [
            a for a in again.changes.raised if a.condition == STEP_ALERT and wf in a.message
        ]
        (row,) = await open_alerts(stack, STEP_ALERT, wf)
        assert row.id == raised.id and row.tenant == tenant
    finally:
        await allow_paid_status(stack, deposit["id"])

    await stack.wait_for_deposit(deposit["id"], {DepositStatus.CREDITED}, timeout=60)
    done = await job(stack, wf, owner)
    assert done["status"] == "succeeded" and done["retrying_step"] is None
    # the worker reported the step (with its error), then its recovery; the workflow went
    # retrying and back to running before it went on
    reports: list[StepReport] = []
    statuses: list[str] = []
    async for event in stack.handle(wf).fetch_history_events():
        signaled = event.workflow_execution_signaled_event_attributes
        if event.HasField("workflow_execution_signaled_event_attributes") and (
            signaled.signal_name == STEP_RETRYING_SIGNAL
        ):
            (report,) = await stack.temporal.data_converter.decode(
                signaled.input.payloads, [StepReport]
            )
            reports.append(report)
        if event.HasField("upsert_workflow_search_attributes_event_attributes"):
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
            if "SettleStatus" in fields.indexed_fields:
                statuses.append(json.loads(fields.indexed_fields["SettleStatus"].data))
    assert reports[0].retrying and reports[0].attempt == 3
    assert reports[0].error and REFUSAL_HEAD in reports[0].error
    assert not reports[-1].retrying and reports[-1].activity_type == "deposits.set_outcome"
    assert statuses[:2] == ["retrying", "running"] and statuses[-1] == "succeeded"
    cleared = await run_monitor(stack, monitor_input(stack.settings))
    assert raised.id in cleared.changes.cleared
    assert not await open_alerts(stack, STEP_ALERT, wf)


async def test_a_ticket_purchase_whose_write_is_refused_parks_and_completes_on_retry(
    stack: Stack,
) -> None:
    """The same rule for the ticket workflows' bookkeeping: recording the captured payment is
    refused as a unique violation (a trigger stands in for a clash): the purchase parks at once
    with the reason, and ``retry`` once the clash is gone completes it, charged once."""
    tenant = unique_tenant()
    buyer = stack.auth("njeri", tenant)
    event = await create_event(stack, tenant)
    name = f"clash_{uuid.uuid4().hex[:12]}"
    async with stack.sessions.begin() as session:
        await session.execute(
            text(
                f"CREATE FUNCTION {name}() RETURNS trigger AS $$ BEGIN RAISE unique_violation "
                "USING MESSAGE = 'duplicate key value violates unique constraint \"uq_clash\"', "
                "DETAIL = 'Key (payment_intent_id) already exists.'; END $$ LANGUAGE plpgsql"
            )
        )
        await session.execute(
            text(
                f"CREATE TRIGGER {name} BEFORE UPDATE ON ticket_purchases FOR EACH ROW "
                f"WHEN (NEW.status = 'paid' AND NEW.buyer_email LIKE '{name}%') "
                f"EXECUTE FUNCTION {name}()"
            )
        )
    try:
        _, accepted = await buy(stack, buyer, event, buyer_email=f"{name}@example.com")
        wf = accepted["workflow_id"]
        parked = await eventually(
            lambda: job(stack, wf, buyer),
            lambda j: j["status"] == "needs_attention",
            timeout=30,
            what="the purchase to park",
        )
        assert parked["error"].startswith("payment_captured failed: UniqueViolation: ")
        assert "uq_clash" in parked["error"] and "payment_intent_id" in parked["error"]
    finally:
        async with stack.sessions.begin() as session:
            await session.execute(text(f"DROP TRIGGER {name} ON ticket_purchases"))
            await session.execute(text(f"DROP FUNCTION {name}()"))
    retried = await stack.api.post(f"{JOBS}/{wf}/retry", headers=buyer)
    assert retried.status_code == 202, retried.text
    await until(stack, accepted["id"], buyer, lambda v: v["status"] == "completed", "completed")
    (intent,) = intents_for(stack, accepted["id"])
    assert intent["status"] == "succeeded" and intent["amount_received"] == 2500
