"""``Reconcile``: Settle's ledger and rows against each provider's own record of a window.

Run daily by a Temporal Schedule (``<prefix>reconcile``, the previous UTC day) and on demand
(``POST /api/v1/reconciliations``). The workflow only sequences: open the report, read the four
providers in parallel (each activity compares and returns its mismatches), record the report
(items + one alert per mismatch). A provider that cannot be read after its retries is itself an
item: the report is then not clean, and says why.

Daraja has no list of payments to ask for, so its side is what it told Settle (the kept STK
callbacks); each Daraja item's receipt is then put to Daraja's Transaction Status, whose result
comes back asynchronously (ResultURL -> API -> signal ``mpesa_transaction_status``), so a forged
callback (Daraja knows no such payment) is told apart from a payment Settle never credited.
Credited deposits were confirmed that way before they were credited (``MpesaDeposit``).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from domain.mpesa import TransactionStatusResult
from domain.queues import ActivityQueue
from domain.reconcile import (
    DARAJA_RECEIPT_KINDS,
    OpenReconciliation,
    ProviderCheck,
    ProviderReport,
    ReconcileInput,
    ReconcileItem,
    ReconcileResult,
    ReconcileStatus,
    ReconcileWindow,
    RecordReport,
    StatusQuery,
    confirm_with_daraja,
    previous_day,
)
from domain.tickets import EmailInput, WebhookInput
from workflows.dead_letter import StepVisibility

with workflow.unsafe.imports_passed_through():
    from activities.notify import NotifyActivities
    from activities.reconcile import ReconcileActivities

#: a provider read is a handful of paged list calls; an outage of a few minutes is waited out
PROVIDER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=1), maximum_attempts=6
)
PROVIDER_TIMEOUT = timedelta(minutes=10)
DB_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=10)
DB_TIMEOUT = timedelta(minutes=1)
STATUS_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=5)
STATUS_TIMEOUT = timedelta(seconds=30)
NOTIFY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=5)
NOTIFY_TIMEOUT = timedelta(seconds=30)


@workflow.defn(name="Reconcile")
class Reconcile(StepVisibility):
    def __init__(self) -> None:
        self._status = ReconcileStatus()
        #: Transaction Status results by ConversationID, as the API hands them over
        self._daraja_results: dict[str, TransactionStatusResult] = {}

    @workflow.query
    def status(self) -> ReconcileStatus:
        return self._status

    @workflow.signal
    def mpesa_transaction_status(self, result: TransactionStatusResult) -> None:
        """Daraja's answer about one receipt (or its queue timeout); the first answer stands."""
        self._daraja_results.setdefault(result.conversation_id, result)

    @workflow.run
    async def run(self, request: ReconcileInput) -> ReconcileResult:
        if request.since is not None and request.until is not None:
            window = ReconcileWindow(since=request.since, until=request.until)
        else:
            window = previous_day(workflow.now())
        reconciliation_id = await workflow.execute_activity_method(
            ReconcileActivities.open,
            OpenReconciliation(
                reconciliation_id=request.reconciliation_id,
                workflow_id=workflow.info().workflow_id,
                since=window.since,
                until=window.until,
                requested_by=request.requested_by,
            ),
            task_queue=request.queue(ActivityQueue.DB),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        self._status.reconciliation_id = reconciliation_id
        check = ProviderCheck(
            reconciliation_id=reconciliation_id,
            since=window.since,
            until=window.until,
            chain=request.chain,
            min_intent_amount_minor=request.min_intent_amount_minor,
        )
        steps: list[tuple[str, Any, ActivityQueue]] = [
            ("stripe", ReconcileActivities.stripe, ActivityQueue.STRIPE),
            ("chain", ReconcileActivities.chain, ActivityQueue.EVM_READ),
            ("solana", ReconcileActivities.solana, ActivityQueue.SOLANA),
        ]
        self._status.step = "reading"
        self._status.pending = ["daraja", *(name for name, _, _ in steps)]
        reports = await asyncio.gather(
            self._daraja(request, check),
            *(
                self._read(name, method, request.queue(queue), check)
                for name, method, queue in steps
            ),
        )
        self._status.step = "recording"
        result = await workflow.execute_activity_method(
            ReconcileActivities.record,
            RecordReport(reconciliation_id=reconciliation_id, reports=list(reports)),
            task_queue=request.queue(ActivityQueue.DB),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        if not result.clean:
            self._status.step = "telling the admins"
            await self._tell_admins(request, window, result)
        self._status.step = "done"
        return result

    async def _tell_admins(
        self, request: ReconcileInput, window: ReconcileWindow, result: ReconcileResult
    ) -> None:
        """One email per admin and one webhook for the report (its items are alerts already); a
        notification that cannot be sent does not undo the report."""
        rid = result.reconciliation_id
        detail = (
            f"Reconciliation of {window.since.isoformat()} to {window.until.isoformat()}: "
            f"{result.summary()}. Report: GET /api/v1/reconciliations/{rid}"
        )
        sends: list[tuple[Any, Any]] = [
            (
                NotifyActivities.email,
                EmailInput(
                    message_id=f"reconciliation:{rid}:{admin}",
                    to=admin,
                    template="admin_alert",
                    context={
                        "title": f"reconciliation found {result.items} mismatch(es)",
                        "detail": detail,
                        "workflow_id": workflow.info().workflow_id,
                    },
                ),
            )
            for admin in request.admin_emails
        ]
        if request.alert_webhook_tenant:
            sends.append(
                (
                    NotifyActivities.webhook,
                    WebhookInput(
                        message_id=f"reconciliation:{rid}",
                        tenant=request.alert_webhook_tenant,
                        event_type="settle.reconciliation",
                        data={"reconciliation_id": rid, "items": result.items, "detail": detail},
                    ),
                )
            )
        for method, message in sends:
            try:
                await workflow.execute_activity_method(
                    method,
                    message,
                    task_queue=request.queue(ActivityQueue.NOTIFY),
                    start_to_close_timeout=NOTIFY_TIMEOUT,
                    retry_policy=NOTIFY_RETRY,
                )
            except ActivityError as err:
                workflow.logger.warning("reconciliation notice not sent: %s", err.cause)

    async def _daraja(self, request: ReconcileInput, check: ProviderCheck) -> ProviderReport:
        """The kept callbacks' mismatches, each checked with Daraja's Transaction Status."""
        report = await self._read(
            "daraja", ReconcileActivities.daraja, request.queue(ActivityQueue.DB), check
        )
        asked: dict[int, str] = {}  # item index -> ConversationID
        for index, item in enumerate(report.items):
            if item.kind not in DARAJA_RECEIPT_KINDS or not item.receipt:
                continue
            if len(asked) == request.max_status_queries:
                break
            try:
                requested = await workflow.execute_activity_method(
                    ReconcileActivities.transaction_status,
                    StatusQuery(
                        reconciliation_id=check.reconciliation_id,
                        receipt=item.receipt,
                        originator_id=f"recon-{check.reconciliation_id[:8]}-{index}",
                    ),
                    task_queue=request.queue(ActivityQueue.MPESA),
                    start_to_close_timeout=STATUS_TIMEOUT,
                    retry_policy=STATUS_RETRY,
                )
            except ActivityError as err:
                report.items[index] = item.model_copy(
                    update={"detail": f"{item.detail}; Transaction Status refused: {err.cause}"}
                )
                continue
            asked[index] = requested.conversation_id
        if asked:
            self._status.step = "awaiting Daraja"
            # whatever has not come by then is reported as unanswered
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: all(c in self._daraja_results for c in asked.values()),
                    timeout=timedelta(seconds=request.status_wait_seconds),
                )
        for index, conversation in asked.items():
            report.items[index] = confirm_with_daraja(
                report.items[index],
                self._daraja_results.get(conversation),
                request.status_wait_seconds,
            )
        return report

    async def _read(
        self, provider: str, method: Any, task_queue: str, check: ProviderCheck
    ) -> ProviderReport:
        try:
            report: ProviderReport = await workflow.execute_activity_method(
                method,
                check,
                task_queue=task_queue,
                start_to_close_timeout=PROVIDER_TIMEOUT,
                retry_policy=PROVIDER_RETRY,
            )
        except ActivityError as err:
            cause = err.cause or err
            report = ProviderReport(
                provider=provider,
                items=[
                    ReconcileItem(
                        provider=provider,
                        kind="provider_unreadable",
                        provider_ref=provider,
                        detail=f"{provider} could not be read: {cause}",
                    )
                ],
            )
        finally:
            self._status.pending = [p for p in self._status.pending if p != provider]
        return report
