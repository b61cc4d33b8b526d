"""``EventDelivery`` (``event-<key>``): one event to its tenant's subscribed endpoints, retried on
``policies.WEBHOOK`` (about a day), apart from the operation that raised it.

Operations start it with :func:`emit` as a child whose parent-close policy is ``ABANDON``: a
deposit or a parked job does not wait a day for a receiver that is down, and the delivery goes on
after the operation has ended. Its workflow id is the event's key, so a replayed or retried start
finds the same run. ``WebhookRedelivery`` makes one more attempt at one delivery, for an operator.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

from domain.events import (
    EmitEventInput,
    EmitResult,
    EventData,
    EventType,
    RedeliverInput,
    event_workflow_id,
)
from domain.queues import ActivityQueue, Routed
from workflows import policies

with workflow.unsafe.imports_passed_through():
    from activities.events import EventActivities

#: an operator's redelivery is one attempt: its outcome is in the deliveries listing
REDELIVER = RetryPolicy(maximum_attempts=1)


@workflow.defn(name="EventDelivery")
class EventDelivery:
    @workflow.run
    async def run(self, request: EmitEventInput) -> EmitResult:
        queue = request.queue(ActivityQueue.NOTIFY)
        try:
            return await workflow.execute_activity_method(
                EventActivities.emit_event,
                request,
                task_queue=queue,
                start_to_close_timeout=policies.NOTIFY_TIMEOUT,
                retry_policy=policies.WEBHOOK,
            )
        except ActivityError as err:
            workflow.logger.warning("gave up on event %s: %s", request.key, err.cause or err)
            failed = await workflow.execute_activity_method(
                EventActivities.give_up,
                request,
                task_queue=queue,
                start_to_close_timeout=policies.DB_TIMEOUT,
                retry_policy=policies.DB_BOOKKEEPING,
            )
            return EmitResult(skipped=failed)


@workflow.defn(name="WebhookRedelivery")
class WebhookRedelivery:
    @workflow.run
    async def run(self, request: RedeliverInput) -> bool:
        return await workflow.execute_activity_method(
            EventActivities.redeliver,
            request,
            task_queue=request.queue(ActivityQueue.NOTIFY),
            start_to_close_timeout=policies.NOTIFY_TIMEOUT,
            retry_policy=REDELIVER,
        )


async def emit(
    routed: Routed,
    tenant: str,
    event_type: EventType,
    subject: str,
    data: EventData,
    *,
    callbacks: list[str] | None = None,
) -> None:
    """Hand the event ``<type>:<subject>`` to its own ``EventDelivery`` and go on at once.

    Callers guard the call with ``workflow.patched``: it adds commands to their histories.
    """
    key = f"{event_type.value}:{subject}"
    request = EmitEventInput(
        key=key,
        tenant=tenant,
        event_type=event_type.value,
        data=data,
        callback_endpoint_ids=callbacks or [],
        task_queue_prefix=routed.task_queue_prefix,
    )
    # an already started one is the same event on its way
    with contextlib.suppress(WorkflowAlreadyStartedError):
        await workflow.start_child_workflow(
            EventDelivery.run,
            request,
            id=event_workflow_id(key),
            parent_close_policy=ParentClosePolicy.ABANDON,
            execution_timeout=timedelta(days=2),
        )
