"""Notifications (queue ``notify``): emails and signed webhooks, each recorded by message id.

A message already recorded as sent is not sent again, so a retried activity resends only what did
not go out (a crash between sending and recording can still send twice: email and webhooks are
at-least-once, and every message carries its id for the receiver to deduplicate).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities import business_metrics
from domain.errors import (
    EmailRejected,
    WebhookDeliveryFailed,
    WebhookEndpointGone,
    WebhookTargetRefused,
)
from domain.events import subscribed_before
from domain.tickets import EmailInput, RecordOutcomeInput, WebhookInput, WebhookResult
from providers.email import Mailer
from providers.webhooks import WebhookSender
from runtime.logging import get_logger
from store import tickets
from store.db import reads_of

log = get_logger("activities.notify")


class NotifyActivities:
    def __init__(
        self, mailer: Mailer, webhooks: WebhookSender, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        self._mailer = mailer
        self._webhooks = webhooks
        self._sessions = sessions
        self._reads = reads_of(sessions)

    async def _record(
        self,
        message_id: str,
        channel: str,
        target: str,
        kind: str,
        status: str,
        error: str | None = None,
    ) -> None:
        async with self._sessions.begin() as session:
            await tickets.record_notification(
                session,
                message_id=message_id,
                channel=channel,
                target=target,
                kind=kind,
                status=status,
                error=error,
            )

    async def _sent(self, message_id: str) -> bool:
        async with self._reads() as session:
            row = await tickets.notification(session, message_id)
            return row is not None and row.status == "sent"

    @activity.defn(name="notify.email")
    async def email(self, request: EmailInput) -> bool:
        """True when sent now, False when it had been sent before."""
        if await self._sent(request.message_id):
            return False
        try:
            await self._mailer.send(
                request.template, request.context, to=request.to, message_id=request.message_id
            )
        except EmailRejected as exc:
            await self._record(
                request.message_id, "email", request.to, request.template, "failed", str(exc)
            )
            business_metrics.notification("email", request.template, "failed")
            raise
        await self._record(request.message_id, "email", request.to, request.template, "sent")
        business_metrics.notification("email", request.template, "sent")
        log.info("email sent", template=request.template, message_id=request.message_id)
        return True

    @activity.defn(name="notify.webhook")
    async def webhook(self, request: WebhookInput) -> WebhookResult:
        """To every active endpoint of the tenant subscribed to the event type; a 410 disables
        that endpoint for good."""
        async with self._reads() as session:
            endpoints = [
                (e.id, e.url, e.secret)
                for e in await tickets.active_endpoints(session, request.tenant)
                if subscribed_before(e.event_types, request.event_type)
            ]
        delivered = skipped = 0
        failures: list[str] = []
        for endpoint_id, url, secret in endpoints:
            message_id = f"{request.message_id}:{endpoint_id}"
            if await self._sent(message_id):
                continue
            try:
                await self._webhooks.send(
                    url=url,
                    secret=secret,
                    message_id=message_id,
                    event_type=request.event_type,
                    data=dict(request.data),
                )
            except WebhookEndpointGone as exc:
                async with self._sessions.begin() as session:
                    await tickets.disable_endpoint(session, endpoint_id, str(exc))
                await self._record(
                    message_id, "webhook", url, request.event_type, "skipped", str(exc)
                )
                skipped += 1
                continue
            except WebhookTargetRefused as exc:
                await self._record(
                    message_id, "webhook", url, request.event_type, "failed", str(exc)
                )
                business_metrics.notification("webhook", request.event_type, "failed")
                skipped += 1
                continue
            except WebhookDeliveryFailed as exc:
                failures.append(str(exc))
                continue
            await self._record(message_id, "webhook", url, request.event_type, "sent")
            business_metrics.notification("webhook", request.event_type, "sent")
            delivered += 1
        if failures:
            raise WebhookDeliveryFailed("; ".join(failures))
        return WebhookResult(delivered=delivered, skipped=skipped)

    @activity.defn(name="notify.record")
    async def record(self, outcome: RecordOutcomeInput) -> None:
        """The workflow gave up on a message: keep that it failed (metrics, operators)."""
        await self._record(
            outcome.message_id,
            outcome.channel,
            outcome.target,
            outcome.kind,
            outcome.status,
            outcome.error,
        )
        if outcome.status == "failed":
            business_metrics.notification(outcome.channel, outcome.kind, "failed")
