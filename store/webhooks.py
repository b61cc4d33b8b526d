"""Webhook deliveries and their attempts: what the ``EventDelivery`` workflow sends and what the
deliveries listing shows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from domain.events import EventData, subscribed
from store.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, utcnow

ENDPOINT = "endpoint"
CALLBACK = "callback"


def delivery_id(event_key: str, endpoint_id: str) -> str:
    """The ``webhook-id`` of one event at one endpoint: derived, never drawn, so every retry,
    replay and redelivery carries the same one."""
    return f"{event_key}:{endpoint_id}"


async def recipients(
    session: AsyncSession, tenant: str, event_type: str, callback_ids: list[str]
) -> list[WebhookEndpoint]:
    """The tenant's active endpoints subscribed to ``event_type``, and the named callback
    endpoints (of the same tenant: an id from elsewhere is ignored)."""
    rows = await session.execute(
        select(WebhookEndpoint).where(
            WebhookEndpoint.tenant == tenant,
            WebhookEndpoint.disabled_at.is_(None),
            or_(
                WebhookEndpoint.kind == ENDPOINT,
                WebhookEndpoint.id.in_(callback_ids or [""]),
            ),
        )
    )
    return [
        e for e in rows.scalars() if e.kind == CALLBACK or subscribed(e.event_types, event_type)
    ]


async def ensure_delivery(
    session: AsyncSession,
    *,
    event_key: str,
    endpoint: WebhookEndpoint,
    event_type: str,
    data: EventData,
) -> WebhookDelivery:
    """The delivery row of (event, endpoint), created once."""
    ident = delivery_id(event_key, endpoint.id)
    await session.execute(
        insert(WebhookDelivery)
        .values(
            id=ident,
            event_id=event_key,
            endpoint_id=endpoint.id,
            tenant=endpoint.tenant,
            event_type=event_type,
            data=dict(data),
            status="pending",
            created_at=utcnow(),
        )
        .on_conflict_do_nothing()
    )
    row = await session.get(WebhookDelivery, ident, populate_existing=True)
    assert row is not None
    return row


async def record_attempt(
    session: AsyncSession,
    *,
    delivery: WebhookDelivery,
    status: str,
    response_code: int | None,
    started_at: datetime,
    duration_ms: int,
    error: str | None,
    trigger: str,
    final_status: str | None,
) -> None:
    """Keep one attempt; ``final_status`` (delivered, failed) settles the delivery."""
    session.add(
        WebhookAttempt(
            delivery_id=delivery.id,
            endpoint_id=delivery.endpoint_id,
            status=status,
            response_code=response_code,
            duration_ms=duration_ms,
            error=error,
            trigger=trigger,
            started_at=started_at,
            finished_at=utcnow(),
        )
    )
    row = await session.get(WebhookDelivery, delivery.id)
    if row is not None and final_status is not None:
        row.status = final_status
        if final_status == "delivered":
            row.delivered_at = utcnow()


async def attempts_page(
    session: AsyncSession, endpoint_id: str, before_seq: int | None, limit: int
) -> list[tuple[WebhookAttempt, WebhookDelivery]]:
    """Newest first; ``before_seq`` continues after a page's last attempt."""
    query = (
        select(WebhookAttempt, WebhookDelivery)
        .join(WebhookDelivery, WebhookDelivery.id == WebhookAttempt.delivery_id)
        .where(WebhookAttempt.endpoint_id == endpoint_id)
        .order_by(WebhookAttempt.seq.desc())
        .limit(limit)
    )
    if before_seq is not None:
        query = query.where(WebhookAttempt.seq < before_seq)
    return [(a, d) for a, d in (await session.execute(query)).all()]
