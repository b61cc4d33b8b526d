"""Webhook endpoints: where signed events are sent.

A tenant's ``venue_admin`` or ``admin`` manages the tenant's endpoints. A ``platform_admin``
manages the platform's: those of ``ALERT_WEBHOOK_TENANT``, a reserved tenant name no token can
carry, where the Monitor's alerts go. An endpoint subscribes to event types (``event_types``);
one made without a list receives what endpoints received before subscriptions existed. Every
attempt at a delivery is listed (``.../deliveries``) and any delivery can be sent again
(``.../redeliver``).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from fastapi import Path as FastApiPath
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select

from api import cursors
from api.auth import Role
from api.deps import CurrentUser, ReadSessionsDep, SessionFactoryDep, SettingsDep, TemporalDep
from api.errors import error_responses
from api.timestamps import UtcDateTime
from domain.errors import (
    Forbidden,
    InvalidInput,
    NotFound,
    WebhookDeliveryFailed,
    WebhookTargetRefused,
)
from domain.events import EVENT_TYPES, MAX_SUBSCRIPTIONS, RedeliverInput
from domain.queues import workflow_queue
from providers.webhooks import check_target
from runtime.redact import redact
from runtime.settings import Settings
from store import tickets, webhooks
from store.models import WebhookDelivery, WebhookEndpoint

router = APIRouter(prefix="/api/v1/webhook-endpoints", tags=["webhook-endpoints"])
DEFAULT_PAGE, MAX_PAGE = 50, 200


def endpoint_owner(principal: CurrentUser, settings: SettingsDep) -> str:
    """The tenant whose endpoints the caller manages."""
    if {Role.VENUE_ADMIN, Role.ADMIN} & principal.roles:
        return principal.tenant
    if principal.is_platform_admin:
        return settings.alert_webhook_tenant
    raise Forbidden("venue_admin, admin or platform_admin role required")


EndpointTenant = Annotated[str, Depends(endpoint_owner)]


class EndpointBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=8, max_length=2000, examples=["https://venue.example/settle-events"]
    )
    event_types: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SUBSCRIPTIONS,
        description="the event types sent to this endpoint (omitted: ticket.purchased, "
        "ticket.refunded, ticket.transferred and settle.alert, as before subscriptions): "
        + ", ".join(EVENT_TYPES),
        examples=[["deposit.credited", "deposit.failed"]],
    )

    @field_validator("event_types")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        unknown = [t for t in value if t not in EVENT_TYPES]
        if unknown:
            raise ValueError(f"unknown event types {unknown}; known: {', '.join(EVENT_TYPES)}")
        return sorted(set(value))


class EndpointView(BaseModel):
    id: str
    url: str
    #: None: the events sent before subscriptions (ticket.purchased, .refunded, .transferred,
    #: settle.alert)
    event_types: list[str] | None
    disabled_at: UtcDateTime | None
    disabled_reason: str | None


class CreatedEndpoint(EndpointView):
    #: shown once: the Standard Webhooks signing secret
    secret: str


@router.post(
    "", status_code=201, response_model=CreatedEndpoint, responses=error_responses(401, 403, 422)
)
async def create_endpoint(
    body: EndpointBody,
    settings: SettingsDep,
    sessions: SessionFactoryDep,
    tenant: EndpointTenant,
) -> CreatedEndpoint:
    """Private or loopback targets are refused unless allow-listed (WEBHOOK_ALLOWED_NETWORKS)."""
    await checked_target(body.url, settings, "url")
    endpoint = WebhookEndpoint(
        tenant=tenant,
        url=body.url,
        secret=tickets.new_secret(),
        event_types=body.event_types,
        kind=webhooks.ENDPOINT,
    )
    async with sessions.begin() as session:
        session.add(endpoint)
    return CreatedEndpoint(
        id=endpoint.id,
        url=endpoint.url,
        event_types=endpoint.event_types,
        disabled_at=None,
        disabled_reason=None,
        secret=endpoint.secret,
    )


@router.get("", response_model=list[EndpointView], responses=error_responses(401, 403))
async def list_endpoints(reads: ReadSessionsDep, tenant: EndpointTenant) -> list[EndpointView]:
    async with reads() as session:
        rows = (
            await session.execute(
                select(WebhookEndpoint).where(
                    WebhookEndpoint.tenant == tenant, WebhookEndpoint.kind == webhooks.ENDPOINT
                )
            )
        ).scalars()
        return [
            EndpointView(
                id=e.id,
                url=e.url,
                event_types=e.event_types,
                disabled_at=e.disabled_at,
                disabled_reason=e.disabled_reason,
            )
            for e in rows
        ]


@router.delete("/{endpoint_id}", status_code=204, responses=error_responses(401, 403, 404))
async def delete_endpoint(
    endpoint_id: str, sessions: SessionFactoryDep, tenant: EndpointTenant
) -> Response:
    async with sessions.begin() as session:
        endpoint = await session.get(WebhookEndpoint, endpoint_id)
        if endpoint is None or endpoint.tenant != tenant or endpoint.kind != webhooks.ENDPOINT:
            raise NotFound("webhook endpoint not found")
        await session.delete(endpoint)
    return Response(status_code=204)


async def checked_target(url: str, settings: Settings, field: str) -> None:
    """The SSRF rules of ``providers.webhooks`` as a 422 naming ``field``."""
    try:
        await check_target(url, settings.webhook_allowed_networks)
    except WebhookTargetRefused as exc:
        raise WebhookTargetRefused(exc.message, field=field) from exc
    except WebhookDeliveryFailed as exc:  # the host does not resolve: the caller's input
        raise InvalidInput(exc.message, field=field) from exc


# --- deliveries --------------------------------------------------------------------------------


class AttemptView(BaseModel):
    attempt: int
    delivery_id: str
    #: the ``webhook-id`` header: the same on every attempt and redelivery
    webhook_id: str
    event_id: str
    event_type: str
    #: this attempt: succeeded | failed
    status: str
    #: the delivery: pending | delivered | failed
    delivery_status: str
    response_code: int | None
    duration_ms: int
    error: str | None
    #: retry (the delivery's schedule) | redeliver (asked through the API)
    trigger: str
    started_at: UtcDateTime
    finished_at: UtcDateTime


class AttemptPage(BaseModel):
    attempts: list[AttemptView]
    #: pass as ``cursor`` for the next (older) page; None on the last page
    next_cursor: str | None


class Redelivery(BaseModel):
    delivery_id: str
    workflow_id: str


async def _own_endpoint(reads: ReadSessionsDep, endpoint_id: str, tenant: str) -> None:
    async with reads() as session:
        endpoint = await session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.tenant != tenant:
        raise NotFound("webhook endpoint not found")


@router.get(
    "/{endpoint_id}/deliveries",
    response_model=AttemptPage,
    responses=error_responses(401, 403, 404, 422),
)
async def list_deliveries(
    endpoint_id: str,
    reads: ReadSessionsDep,
    settings: SettingsDep,
    tenant: EndpointTenant,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> AttemptPage:
    """Every attempt at the endpoint's deliveries, newest first."""
    await _own_endpoint(reads, endpoint_id, tenant)
    scope = f"webhook-deliveries:{endpoint_id}"
    token = cursors.decode(settings, scope, cursor)
    before = int(token.decode()) if token is not None else None
    async with reads() as session:
        rows = await webhooks.attempts_page(session, endpoint_id, before, limit)
    attempts = [
        AttemptView(
            attempt=a.seq,
            delivery_id=d.id,
            webhook_id=d.id,
            event_id=d.event_id,
            event_type=d.event_type,
            status=a.status,
            delivery_status=d.status,
            response_code=a.response_code,
            duration_ms=a.duration_ms,
            error=redact(a.error) if a.error else None,
            trigger=a.trigger,
            started_at=a.started_at,
            finished_at=a.finished_at,
        )
        for a, d in rows
    ]
    last = str(attempts[-1].attempt).encode() if len(attempts) == limit else None
    return AttemptPage(attempts=attempts, next_cursor=cursors.encode(settings, scope, last))


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=Redelivery,
    responses=error_responses(401, 403, 404),
)
async def redeliver(
    endpoint_id: str,
    delivery_id: Annotated[str, FastApiPath(max_length=200)],
    reads: ReadSessionsDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    tenant: EndpointTenant,
) -> Redelivery:
    """One more signed attempt with the same ``webhook-id``; its outcome shows in the listing."""
    async with reads() as session:
        delivery = await session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.endpoint_id != endpoint_id or delivery.tenant != tenant:
        raise NotFound("delivery not found")
    workflow_id = f"webhook-redeliver-{uuid.uuid4().hex}"
    await temporal.start_workflow(
        "WebhookRedelivery",
        RedeliverInput(delivery_id=delivery_id, task_queue_prefix=settings.task_queue_prefix),
        id=workflow_id,
        task_queue=workflow_queue(settings.task_queue_prefix),
    )
    return Redelivery(delivery_id=delivery_id, workflow_id=workflow_id)
