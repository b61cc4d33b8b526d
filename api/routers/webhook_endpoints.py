"""A venue's webhook endpoints: where signed ticket events are sent (venue admins only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from api.auth import Principal, Role
from api.deps import CurrentUser, ReadSessionsDep, SessionFactoryDep, SettingsDep
from api.errors import error_responses
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


def venue_admin(principal: CurrentUser) -> Principal:
    if not {Role.VENUE_ADMIN, Role.ADMIN} & principal.roles:
        raise Forbidden("venue_admin or admin role required")
    return principal


VenueAdmin = Annotated[Principal, Depends(venue_admin)]


class EndpointBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=8, max_length=2000, examples=["https://venue.example/settle-events"]
    )


class EndpointView(BaseModel):
    id: str
    url: str
    disabled_at: datetime | None
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
    principal: VenueAdmin,
) -> CreatedEndpoint:
    """Private or loopback targets are refused unless allow-listed (WEBHOOK_ALLOWED_NETWORKS)."""
    try:
        await check_target(body.url, settings.webhook_allowed_networks)
    except WebhookTargetRefused as exc:
        raise WebhookTargetRefused(exc.message, field="url") from exc
    except WebhookDeliveryFailed as exc:  # the host does not resolve: the caller's input
        raise InvalidInput(exc.message, field="url") from exc
    endpoint = WebhookEndpoint(tenant=principal.tenant, url=body.url, secret=tickets.new_secret())
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
async def list_endpoints(reads: ReadSessionsDep, principal: VenueAdmin) -> list[EndpointView]:
    async with reads() as session:
        rows = (
            await session.execute(
                select(WebhookEndpoint).where(WebhookEndpoint.tenant == principal.tenant)
            )
        ).scalars()
        return [
            EndpointView(
                id=e.id, url=e.url, disabled_at=e.disabled_at, disabled_reason=e.disabled_reason
            )
            for e in rows
        ]


@router.delete("/{endpoint_id}", status_code=204, responses=error_responses(401, 403, 404))
async def delete_endpoint(
    endpoint_id: str, sessions: SessionFactoryDep, principal: VenueAdmin
) -> Response:
    async with sessions.begin() as session:
        endpoint = await session.get(WebhookEndpoint, endpoint_id)
        if endpoint is None or endpoint.tenant != principal.tenant:
            raise NotFound("webhook endpoint not found")
        await session.delete(endpoint)
    return Response(status_code=204)
