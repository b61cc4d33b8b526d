"""``EventDelivery`` (``event-<key>``): one event to its tenant's subscribed endpoints, retried on
``policies.WEBHOOK`` (about a day), apart from the operation that raised it.

Operations call :func:`emit`: the ``events.emit_event`` activity hands the event over (it starts
this workflow, whose id is the event's key, so a retried activity or a replayed operation finds
the same run) and the operation goes on at once; a deposit or a parked job never waits a day for
a receiver that is down. ``WebhookRedelivery`` makes one more attempt at one delivery.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, is_cancelled_exception

from domain.events import (
    EmitEventInput,
    EmitResult,
    EventData,
    EventType,
    RedeliverInput,
)
from domain.queues import ActivityQueue, Routed
from workflows import policies
from workflows.step_visibility import StepVisibility

with workflow.unsafe.imports_passed_through():
    from activities.events import EventActivities

#: an operator's redelivery is one attempt: its outcome is in the deliveries listing
REDELIVER = RetryPolicy(maximum_attempts=1)
#: handing an event over is one call to Temporal
EMIT_TIMEOUT = timedelta(seconds=30)


@workflow.defn(name="EventDelivery")
class EventDelivery(StepVisibility):
    @workflow.run
    async def run(self, request: EmitEventInput) -> EmitResult:
        queue = request.queue(ActivityQueue.NOTIFY)
        try:
            return await workflow.execute_activity_method(
                EventActivities.deliver,
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
class WebhookRedelivery(StepVisibility):
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
    """Hand the event ``<type>:<subject>`` to its own ``EventDelivery`` and go on.

    Callers guard the call with ``workflow.patched``: it adds an activity to their histories.
    The hand-off is retried until Temporal takes it (the event must not be lost); only a
    cancellation ends it early.
    """
    request = event_input(routed, tenant, event_type, subject, data, callbacks=callbacks)
    key = request.key
    try:
        await workflow.execute_activity_method(
            EventActivities.emit_event,
            request,
            task_queue=routed.queue(ActivityQueue.NOTIFY),
            start_to_close_timeout=EMIT_TIMEOUT,
            retry_policy=policies.DB_BOOKKEEPING,
        )
    except ActivityError as err:
        if is_cancelled_exception(err):
            raise asyncio.CancelledError() from err
        # a notification never fails the operation it reports on
        workflow.logger.error("event %s not handed over: %s", key, err.cause or err)


def event_input(
    routed: Routed,
    tenant: str,
    event_type: EventType,
    subject: str,
    data: EventData,
    *,
    callbacks: list[str] | None = None,
) -> EmitEventInput:
    """The event ``<type>:<subject>`` as :func:`emit` and :func:`emit_many` hand it over."""
    return EmitEventInput(
        key=f"{event_type.value}:{subject}",
        tenant=tenant,
        event_type=event_type.value,
        data=data,
        callback_endpoint_ids=callbacks or [],
        task_queue_prefix=routed.task_queue_prefix,
    )


async def emit_many(routed: Routed, events: list[EmitEventInput]) -> None:
    """:func:`emit` for many events in one activity (guarded by ``workflow.patched`` likewise)."""
    if not events:
        return
    try:
        await workflow.execute_activity_method(
            EventActivities.emit_events,
            events,
            task_queue=routed.queue(ActivityQueue.NOTIFY),
            start_to_close_timeout=EMIT_TIMEOUT * 4,
            heartbeat_timeout=EMIT_TIMEOUT,
            retry_policy=policies.DB_BOOKKEEPING,
        )
    except ActivityError as err:
        if is_cancelled_exception(err):
            raise asyncio.CancelledError() from err
        workflow.logger.error("%d events not handed over: %s", len(events), err.cause or err)
