"""Events to tenants' endpoints (queue ``notify``): signed like the ticket webhooks, every HTTP
attempt kept with its answer and duration.

``emit_event`` is what an operation's workflow calls: it hands the event to an ``EventDelivery``
workflow of its own (id ``event-<key>``; a second hand-off of the same event finds it) and
returns at once, so a receiver that is down never holds up a deposit. That workflow runs
``deliver``, retried on ``policies.WEBHOOK``; each run sends only the deliveries still pending, so
an endpoint that answered is not called again when another one failed. A 410 disables the
endpoint and a refused target ends its delivery: neither is retried.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from domain.errors import (
    NotFound,
    WebhookDeliveryFailed,
    WebhookEndpointGone,
    WebhookTargetRefused,
)
from domain.events import EmitEventInput, EmitResult, RedeliverInput, event_workflow_id
from domain.queues import workflow_queue
from providers.webhooks import WebhookSender
from runtime.logging import get_logger
from store import tickets, webhooks
from store.models import WebhookDelivery, WebhookEndpoint

log = get_logger("activities.events")
#: an event's delivery outlives its retries (policies.WEBHOOK: about a day)
DELIVERY_TIMEOUT = timedelta(days=2)


class EventActivities:
    def __init__(
        self, sender: WebhookSender, sessions: async_sessionmaker[AsyncSession], client: Client
    ) -> None:
        self._sender = sender
        self._sessions = sessions
        self._client = client

    @activity.defn(name="events.emit_event")
    async def emit_event(self, request: EmitEventInput) -> bool:
        """Start the event's ``EventDelivery``; False when it had been started before (a retried
        activity, a replayed workflow): an event is delivered once per endpoint."""
        try:
            await self._client.start_workflow(
                "EventDelivery",
                request,
                id=event_workflow_id(request.key),
                task_queue=workflow_queue(request.task_queue_prefix),
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                execution_timeout=DELIVERY_TIMEOUT,
            )
        except WorkflowAlreadyStartedError:
            return False
        return True

    @activity.defn(name="events.emit_events")
    async def emit_events(self, requests: list[EmitEventInput]) -> int:
        """:meth:`emit_event` for many events in one step (a batch of anchors: one per
        credential); returns how many were new. A retry hands over the rest, finding the ones
        already started."""
        started = 0
        for request in requests:
            activity.heartbeat(request.key)
            started += await self.emit_event(request)
        return started

    async def _attempt(
        self, delivery: WebhookDelivery, url: str, secret: str, trigger: str
    ) -> str | None:
        """One signed POST, recorded; None when delivered, else why not. Raises nothing: the
        caller decides whether a failure is retried."""
        started, clock = datetime.now(UTC), time.monotonic()
        code: int | None = None
        error: str | None = None
        final: str | None = "delivered"
        try:
            code = await self._sender.send(
                url=url,
                secret=secret,
                message_id=delivery.id,
                event_type=delivery.event_type,
                data=dict(delivery.data),
            )
        except WebhookEndpointGone as exc:
            code, error, final = 410, str(exc), "failed"
        except WebhookTargetRefused as exc:
            error, final = str(exc), "failed"
        except WebhookDeliveryFailed as exc:
            code, error, final = exc.answered, str(exc), None
        async with self._sessions.begin() as session:
            await webhooks.record_attempt(
                session,
                delivery=delivery,
                status="succeeded" if error is None else "failed",
                response_code=code,
                started_at=started,
                duration_ms=round((time.monotonic() - clock) * 1000),
                error=error,
                trigger=trigger,
                final_status=final,
            )
            if code == 410:
                await tickets.disable_endpoint(session, delivery.endpoint_id, error or "410")
        return error

    @activity.defn(name="events.deliver")
    async def deliver(self, request: EmitEventInput) -> EmitResult:
        """To the tenant's endpoints subscribed to the type (and the operation's callbacks)."""
        async with self._sessions.begin() as session:
            targets = [
                (
                    await webhooks.ensure_delivery(
                        session,
                        event_key=request.key,
                        endpoint=endpoint,
                        event_type=request.event_type,
                        data=request.data,
                    ),
                    endpoint.url,
                    endpoint.secret,
                )
                for endpoint in await webhooks.recipients(
                    session, request.tenant, request.event_type, request.callback_endpoint_ids
                )
            ]
        result, failures = EmitResult(), []
        for delivery, url, secret in targets:
            if delivery.status != "pending":
                continue  # delivered, or ended for good, by an earlier attempt
            error = await self._attempt(delivery, url, secret, "retry")
            if error is None:
                result.delivered += 1
            elif await self._still_pending(delivery.id):
                failures.append(error)
            else:
                result.skipped += 1
        if failures:
            raise WebhookDeliveryFailed("; ".join(failures))
        log.info("event sent", key=request.key, type=request.event_type, **result.model_dump())
        return result

    async def _still_pending(self, delivery_id: str) -> bool:
        async with self._sessions() as session:
            row = await session.get(WebhookDelivery, delivery_id)
            return row is not None and row.status == "pending"

    @activity.defn(name="events.give_up")
    async def give_up(self, request: EmitEventInput) -> int:
        """The retries ran out: the deliveries still pending are marked failed (redeliver can
        still send them)."""
        async with self._sessions.begin() as session:
            count = 0
            for endpoint in await webhooks.recipients(
                session, request.tenant, request.event_type, request.callback_endpoint_ids
            ):
                row = await session.get(
                    WebhookDelivery, webhooks.delivery_id(request.key, endpoint.id)
                )
                if row is not None and row.status == "pending":
                    row.status, count = "failed", count + 1
            return count

    @activity.defn(name="events.redeliver")
    async def redeliver(self, request: RedeliverInput) -> bool:
        """One more attempt at a delivery, same ``webhook-id``, signed again; True if delivered."""
        async with self._sessions() as session:
            delivery = await session.get(WebhookDelivery, request.delivery_id)
            endpoint = (
                await session.get(WebhookEndpoint, delivery.endpoint_id) if delivery else None
            )
        if delivery is None or endpoint is None:
            raise NotFound(f"delivery {request.delivery_id} not found")
        return await self._attempt(delivery, endpoint.url, endpoint.secret, "redeliver") is None
