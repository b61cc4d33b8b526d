"""Webhook endpoints: where signed events are sent.

A tenant's ``venue_admin`` or ``admin`` manages the tenant's endpoints (ticket events). A
``platform_admin`` manages the platform's: those of ``ALERT_WEBHOOK_TENANT``, a reserved tenant
name no token can carry, where the Monitor's alerts go.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from api.auth import Role
from api.deps import CurrentUser, ReadSessionsDep, SessionFactoryDep, SettingsDep
from api.errors import error_responses
from api.timestamps import UtcDateTime
from domain.errors import (
    Forbidden,
    InvalidInput,
    NotFound,
    WebhookDeliveryFailed,
    WebhookTargetRefused,
)
from providers.webhooks import check_target
from store import tickets
from store.models import WebhookEndpoint

router = APIRouter(prefix="/api/v1/webhook-endpoints", tags=["webhook-endpoints"])


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


class EndpointView(BaseModel):
    id: str
    url: str
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
    try:
        await check_target(body.url, settings.webhook_allowed_networks)
    except WebhookTargetRefused as exc:
        raise WebhookTargetRefused(exc.message, field="url") from exc
    except WebhookDeliveryFailed as exc:  # the host does not resolve: the caller's input
        raise InvalidInput(exc.message, field="url") from exc
    endpoint = WebhookEndpoint(tenant=tenant, url=body.url, secret=tickets.new_secret())
    async with sessions.begin() as session:
        session.add(endpoint)
    return CreatedEndpoint(
        id=endpoint.id,
        url=endpoint.url,
        disabled_at=None,
        disabled_reason=None,
        secret=endpoint.secret,
    )


@router.get("", response_model=list[EndpointView], responses=error_responses(401, 403))
async def list_endpoints(reads: ReadSessionsDep, tenant: EndpointTenant) -> list[EndpointView]:
    async with reads() as session:
        rows = (
            await session.execute(select(WebhookEndpoint).where(WebhookEndpoint.tenant == tenant))
        ).scalars()
        return [
            EndpointView(
                id=e.id, url=e.url, disabled_at=e.disabled_at, disabled_reason=e.disabled_reason
            )
            for e in rows
        ]


@router.delete("/{endpoint_id}", status_code=204, responses=error_responses(401, 403, 404))
async def delete_endpoint(
    endpoint_id: str, sessions: SessionFactoryDep, tenant: EndpointTenant
) -> Response:
    async with sessions.begin() as session:
        endpoint = await session.get(WebhookEndpoint, endpoint_id)
        if endpoint is None or endpoint.tenant != tenant:
            raise NotFound("webhook endpoint not found")
        await session.delete(endpoint)
    return Response(status_code=204)
