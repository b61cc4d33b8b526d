"""The event catalogue: what a tenant sells, at which price, in which currency, which seats.

``venue_admin`` and ``admin`` create and change events; every caller of the tenant reads them and
their availability. Another tenant's event is a 404. HTTP over :mod:`operations.ticket_catalogue`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.auth import Principal, Role
from api.deps import ContextDep, CurrentUser
from api.errors import error_responses
from domain.errors import Forbidden
from operations import ticket_catalogue
from operations.ticket_catalogue import Availability, EventBody, EventPatch, EventView

router = APIRouter(prefix="/api/v1/events", tags=["events"])


def venue_admin(principal: CurrentUser) -> Principal:
    if not {Role.VENUE_ADMIN, Role.ADMIN} & principal.roles:
        raise Forbidden("venue_admin or admin role required")
    return principal


VenueAdmin = Annotated[Principal, Depends(venue_admin)]


@router.post(
    "", status_code=201, response_model=EventView, responses=error_responses(401, 403, 422)
)
async def create_event(body: EventBody, principal: VenueAdmin, ctx: ContextDep) -> EventView:
    """Put an event on sale: its currency, its sections' prices and places (venue staff)."""
    return await ticket_catalogue.create_event(ctx, principal, body)


@router.get("", response_model=list[EventView], responses=error_responses(401, 422))
async def list_events(
    principal: CurrentUser,
    ctx: ContextDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[EventView]:
    """The tenant's events, soonest first."""
    return await ticket_catalogue.list_events(ctx, principal, limit=limit, offset=offset)


@router.get("/{event_id}", response_model=EventView, responses=error_responses(401, 404))
async def get_event(event_id: str, principal: CurrentUser, ctx: ContextDep) -> EventView:
    return await ticket_catalogue.get_event(ctx, principal, event_id)


@router.patch(
    "/{event_id}", response_model=EventView, responses=error_responses(401, 403, 404, 422)
)
async def patch_event(
    event_id: str, body: EventPatch, principal: VenueAdmin, ctx: ContextDep
) -> EventView:
    """Change an event. The currency cannot change; a section's capacity cannot drop below what
    is sold or held; named seats of an existing section cannot change."""
    return await ticket_catalogue.patch_event(ctx, principal, event_id, body)


@router.get(
    "/{event_id}/availability", response_model=Availability, responses=error_responses(401, 404)
)
async def availability(event_id: str, principal: CurrentUser, ctx: ContextDep) -> Availability:
    """What is left: per section, places sold, held and free; for named seats, which."""
    return await ticket_catalogue.availability(ctx, principal, event_id)
