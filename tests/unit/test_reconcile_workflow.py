"""Reconcile on the time-skipping server with stand-in activities: the providers are read, each
Daraja item's receipt is put to Transaction Status and its signalled result folded into the item,
an unreadable provider is an item, and the schedule's run reconciles the previous UTC day.

``python -m tests.unit.test_reconcile_workflow`` records the history replayed by
tests/unit/test_replay.py (tests/histories/reconcile/); never re-record an existing file.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from domain.mpesa import TransactionStatusRequested, TransactionStatusResult
from domain.queues import ActivityQueue
from domain.reconcile import (
    OpenReconciliation,
    ProviderCheck,
    ProviderReport,
    ReconcileInput,
    ReconcileItem,
    ReconcileResult,
    RecordReport,
    StatusQuery,
)
from domain.tickets import EmailInput, WebhookInput, WebhookResult
from tests.fixtures.temporal import new_prefix, running_workers, start_time_skipping
from workflows.reconcile import Reconcile

HISTORIES = Path(__file__).resolve().parents[1] / "histories" / "reconcile"
SINCE = datetime(2026, 11, 30, tzinfo=UTC)
UNTIL = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
def env(time_skipping_env: WorkflowEnvironment) -> WorkflowEnvironment:
    return time_skipping_env


@dataclass
class FakeProviders:
    """Records what the workflow asked; the Stripe read fails for good when ``stripe_down``."""

    stripe_down: bool = False
    #: notify.email fails for good (an SMTP server that refuses)
    mail_down: bool = False
    emails: list[EmailInput] = field(default_factory=list)
    webhooks: list[WebhookInput] = field(default_factory=list)
    opened: list[OpenReconciliation] = field(default_factory=list)
    checks: list[ProviderCheck] = field(default_factory=list)
    queries: list[StatusQuery] = field(default_factory=list)
    recorded: list[RecordReport] = field(default_factory=list)

    def activities(self) -> dict[ActivityQueue, list[Any]]:
        fake = self

        @activity.defn(name="reconcile.open")
        async def open_report(request: OpenReconciliation) -> str:
            fake.opened.append(request)
            return request.reconciliation_id or "scheduled-1"

        @activity.defn(name="reconcile.daraja")
        async def daraja(check: ProviderCheck) -> ProviderReport:
            fake.checks.append(check)
            return ProviderReport(
                provider="daraja",
                checked=2,
                items=[
                    ReconcileItem(
                        provider="daraja", kind="payment_unknown", provider_ref="RX1", receipt="RX1"
                    ),
                    ReconcileItem(
                        provider="daraja", kind="payment_unknown", provider_ref="RX2", receipt="RX2"
                    ),
                ],
            )

        @activity.defn(name="reconcile.transaction_status")
        async def transaction_status(query: StatusQuery) -> TransactionStatusRequested:
            fake.queries.append(query)
            return TransactionStatusRequested(
                originator_conversation_id=query.originator_id,
                conversation_id=f"AG_{query.receipt}",
            )

        @activity.defn(name="reconcile.stripe")
        async def stripe(check: ProviderCheck) -> ProviderReport:
            if fake.stripe_down:
                raise ApplicationError("Stripe said 401", type="StripeRejected", non_retryable=True)
            return ProviderReport(provider="stripe", checked=3)

        @activity.defn(name="reconcile.chain")
        async def chain(check: ProviderCheck) -> ProviderReport:
            return ProviderReport(provider="chain", checked=4)

        @activity.defn(name="reconcile.solana")
        async def solana(check: ProviderCheck) -> ProviderReport:
            return ProviderReport(provider="solana", checked=1)

        @activity.defn(name="reconcile.record")
        async def record(request: RecordReport) -> ReconcileResult:
            fake.recorded.append(request)
            items = sum(len(r.items) for r in request.reports)
            return ReconcileResult(
                reconciliation_id=request.reconciliation_id,
                clean=not items,
                items=items,
                checked={r.provider: r.checked for r in request.reports},
                mismatches={r.provider: len(r.items) for r in request.reports},
            )

        @activity.defn(name="notify.email")
        async def email(message: EmailInput) -> bool:
            fake.emails.append(message)
            if fake.mail_down:
                raise ApplicationError("mailbox refused", non_retryable=True)
            return True

        @activity.defn(name="notify.webhook")
        async def webhook(message: WebhookInput) -> WebhookResult:
            fake.webhooks.append(message)
            return WebhookResult(delivered=1)

        return {
            ActivityQueue.NOTIFY: [email, webhook],
            ActivityQueue.DB: [open_report, daraja, record],
            ActivityQueue.MPESA: [transaction_status],
            ActivityQueue.STRIPE: [stripe],
            ActivityQueue.EVM_READ: [chain],
            ActivityQueue.SOLANA: [solana],
        }


def status_result(receipt: str, code: int) -> TransactionStatusResult:
    return TransactionStatusResult(
        originator_conversation_id="o",
        conversation_id=f"AG_{receipt}",
        result_code=code,
        result_desc="ok" if code == 0 else "No completed transaction found for this receipt",
        receipt=receipt,
        amount_minor=15_000 if code == 0 else None,
        transaction_status="Completed" if code == 0 else None,
    )


async def until_awaiting_daraja(handle: WorkflowHandle[Any, Any]) -> None:
    for _ in range(500):
        if (await handle.query(Reconcile.status)).step == "awaiting Daraja":
            return
        await asyncio.sleep(0.02)
    raise TimeoutError("the workflow never waited for Daraja")


async def reconcile_with_answers(
    client: Client, fake: FakeProviders, prefix: str, request: ReconcileInput
) -> tuple[WorkflowHandle[Any, Any], ReconcileResult]:
    """RX1 confirmed by Daraja, RX2 unknown to it."""
    async with running_workers(
        client, prefix, workflows=[Reconcile], activities=fake.activities()
    ) as queue:
        handle = await client.start_workflow(
            Reconcile.run, request, id=f"reconcile-{prefix}", task_queue=queue
        )
        await until_awaiting_daraja(handle)
        await handle.signal(Reconcile.mpesa_transaction_status, status_result("RX1", 0))
        await handle.signal(Reconcile.mpesa_transaction_status, status_result("RX2", 1))
        return handle, await handle.result()


async def test_daraja_items_are_confirmed_and_an_unreadable_provider_is_an_item(
    env: WorkflowEnvironment,
) -> None:
    fake, prefix = FakeProviders(stripe_down=True), new_prefix()
    request = ReconcileInput(
        task_queue_prefix=prefix, reconciliation_id="r-1", since=SINCE, until=UNTIL
    )
    _, result = await reconcile_with_answers(env.client, fake, prefix, request)
    assert [q.receipt for q in fake.queries] == ["RX1", "RX2"]
    assert all(q.reconciliation_id == "r-1" for q in fake.queries)
    assert [(c.since, c.until) for c in fake.checks] == [(SINCE, UNTIL)]
    (recorded,) = fake.recorded
    reports = {r.provider: r for r in recorded.reports}
    confirmed, unknown = reports["daraja"].items
    assert confirmed.kind == "payment_unknown" and "Daraja confirms RX1" in confirmed.detail
    assert confirmed.provider_amount_minor == 15_000
    assert unknown.kind == "callback_not_confirmed"
    (down,) = reports["stripe"].items
    assert down.kind == "provider_unreadable" and "Stripe said 401" in down.detail
    assert (result.clean, result.items) == (False, 3)
    assert result.checked == {"daraja": 2, "stripe": 0, "chain": 4, "solana": 1}


async def test_an_unanswered_query_is_reported_after_the_wait(env: WorkflowEnvironment) -> None:
    fake, prefix = FakeProviders(), new_prefix()
    request = ReconcileInput(
        task_queue_prefix=prefix, since=SINCE, until=UNTIL, status_wait_seconds=600
    )
    async with running_workers(
        env.client, prefix, workflows=[Reconcile], activities=fake.activities()
    ) as queue:
        result = await env.client.execute_workflow(
            Reconcile.run, request, id=f"reconcile-{prefix}", task_queue=queue
        )
    (recorded,) = fake.recorded
    daraja = next(r for r in recorded.reports if r.provider == "daraja")
    assert all("did not answer within 600 s" in i.detail for i in daraja.items)
    assert result.items == 2


async def test_the_scheduled_run_reconciles_the_previous_utc_day(env: WorkflowEnvironment) -> None:
    fake, prefix = FakeProviders(), new_prefix()
    request = ReconcileInput(task_queue_prefix=prefix, status_wait_seconds=1)
    async with running_workers(
        env.client, prefix, workflows=[Reconcile], activities=fake.activities()
    ) as queue:
        handle = await env.client.start_workflow(
            Reconcile.run, request, id=f"reconcile-{prefix}", task_queue=queue
        )
        started = (await handle.describe()).start_time
        await handle.result()
    (opened,) = fake.opened
    assert opened.reconciliation_id is None and opened.requested_by == "schedule"
    day = started.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert opened.until == day and (opened.until - opened.since).days == 1


async def test_the_admins_are_told_of_mismatches_and_a_refused_email_does_not_undo_it(
    env: WorkflowEnvironment,
) -> None:
    fake, prefix = FakeProviders(mail_down=True), new_prefix()
    request = ReconcileInput(
        task_queue_prefix=prefix,
        reconciliation_id="r-2",
        since=SINCE,
        until=UNTIL,
        admin_emails=["a@settle.test", "b@settle.test"],
        alert_webhook_tenant="settle-ops",
    )
    _, result = await reconcile_with_answers(env.client, fake, prefix, request)
    assert result.items == 2 and result.mismatches == {
        "daraja": 2,
        "stripe": 0,
        "chain": 0,
        "solana": 0,
    }
    assert [e.to for e in fake.emails] == ["a@settle.test", "b@settle.test"]
    assert all(e.message_id.startswith("reconciliation:r-2:") for e in fake.emails)
    assert "2 mismatch(es) (daraja 2)" in fake.emails[0].context["detail"]
    (hook,) = fake.webhooks
    assert (hook.tenant, hook.event_type, hook.data["items"]) == (
        "settle-ops",
        "settle.reconciliation",
        2,
    )


async def _record() -> None:
    """Each scenario's history once; an existing file is never re-recorded."""
    scenarios: dict[str, tuple[FakeProviders, dict[str, Any]]] = {
        "v1_daraja_confirmed_stripe_down": (FakeProviders(stripe_down=True), {}),
        "v1_admins_told": (
            FakeProviders(mail_down=True),
            {"admin_emails": ["a@settle.test"], "alert_webhook_tenant": "settle-ops"},
        ),
    }
    HISTORIES.mkdir(parents=True, exist_ok=True)
    env = await start_time_skipping()
    async with env:
        for name, (fake, input_options) in scenarios.items():
            path = HISTORIES / f"{name}.json"
            if path.exists():
                print(f"{path} exists: not re-recorded")
                continue
            prefix = new_prefix()
            request = ReconcileInput(
                task_queue_prefix=prefix,
                reconciliation_id="r-1",
                since=SINCE,
                until=UNTIL,
                **input_options,
            )
            handle, _ = await reconcile_with_answers(env.client, fake, prefix, request)
            path.write_text((await handle.fetch_history()).to_json())
            print(f"wrote {path}")


if __name__ == "__main__":
    asyncio.run(_record())
