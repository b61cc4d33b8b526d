"""``Monitor``: run every minute by a Temporal Schedule (``<prefix>monitor``).

Measures dead letters, old open jobs, the failure rate and the wallets' balances against the
thresholds in settings, keeps the alerts table in step, and tells the admins about each newly
raised alert by email and by signed webhook to the alert tenant's endpoints.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from domain.monitor import MonitorInput, MonitorResult
from domain.queues import ActivityQueue
from domain.tickets import EmailInput, WebhookInput
from workflows.dead_letter import StepVisibility

with workflow.unsafe.imports_passed_through():
    from activities.monitor import MonitorActivities
    from activities.notify import NotifyActivities

#: one minute apart anyway: a run that cannot finish quickly gives way to the next one
MONITOR_RETRY = RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=2))
MONITOR_TIMEOUT = timedelta(seconds=30)


@workflow.defn(name="Monitor")
class Monitor(StepVisibility):
    @workflow.run
    async def run(self, request: MonitorInput) -> MonitorResult:
        readings = await workflow.execute_activity_method(
            MonitorActivities.measure,
            request,
            task_queue=request.queue(ActivityQueue.DB),
            start_to_close_timeout=MONITOR_TIMEOUT,
            retry_policy=MONITOR_RETRY,
        )
        changes = await workflow.execute_activity_method(
            MonitorActivities.reconcile,
            readings,
            task_queue=request.queue(ActivityQueue.DB),
            start_to_close_timeout=MONITOR_TIMEOUT,
            retry_policy=MONITOR_RETRY,
        )
        for alert in changes.raised:
            context = {
                "title": f"Settle alert ({alert.severity}): {alert.condition}",
                "detail": alert.message,
                "workflow_id": workflow.info().workflow_id,
            }
            for admin in request.admin_emails:
                await workflow.execute_activity_method(
                    NotifyActivities.email,
                    EmailInput(
                        message_id=f"alert:{alert.id}:{admin}",
                        to=admin,
                        template="admin_alert",
                        context=context,
                    ),
                    task_queue=request.queue(ActivityQueue.NOTIFY),
                    start_to_close_timeout=MONITOR_TIMEOUT,
                    retry_policy=MONITOR_RETRY,
                )
            await workflow.execute_activity_method(
                NotifyActivities.webhook,
                WebhookInput(
                    message_id=f"alert:{alert.id}",
                    tenant=request.alert_webhook_tenant,
                    event_type="settle.alert",
                    data={
                        "alert_id": alert.id,
                        "condition": alert.condition,
                        "severity": alert.severity,
                        "message": alert.message,
                    },
                ),
                task_queue=request.queue(ActivityQueue.NOTIFY),
                start_to_close_timeout=MONITOR_TIMEOUT,
                retry_policy=MONITOR_RETRY,
            )
        return MonitorResult(readings=readings, changes=changes)
