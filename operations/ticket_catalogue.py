"""The event catalogue: create, list, read and change events, and what is left to sell.

Every caller of the tenant reads its events and their availability; another tenant's event is a
404. Creating and changing events is for ``venue_admin`` and ``admin`` (the router's dependency
checks the role).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, model_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth import Principal
from api.timestamps import UtcDateTime
from domain.errors import Conflict, InvalidInput
from operations.context import Context
from runtime.settings import Settings
from store import events
from store.models import TicketEvent, TicketEventSection

IDENTIFIER = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$"
#: named seats per event, sections per event: bounds on what one request may describe
MAX_SEATS = 5_000
MAX_SECTIONS = 50
MAX_CAPACITY = 100_000


class SectionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=64, pattern=IDENTIFIER, examples=["FLOOR"])
    price: StrictInt = Field(description="minor units of the event's currency", examples=[2500])
    capacity: StrictInt | None = Field(
        default=None, ge=0, le=MAX_CAPACITY, description="places, for a section without seats"
    )
    seats: list[Annotated[str, Field(min_length=1, max_length=64, pattern=IDENTIFIER)]] | None = (
        Field(default=None, max_length=MAX_SEATS, description="named seats (capacity follows)")
    )

    @model_validator(mode="after")
    def _places(self) -> SectionBody:
        if (self.capacity is None) == (self.seats is None):
            raise ValueError("give either capacity or seats")
        if self.seats is not None and len(set(self.seats)) != len(self.seats):
            raise ValueError("seats must be distinct")
        return self


class NftBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=32)
    symbol: str | None = Field(default=None, min_length=1, max_length=10, pattern=r"^[A-Z0-9]+$")
    metadata_base_uri: str | None = Field(
        default=None, max_length=500, pattern=r"^(https://|ipfs://)\S+$"
    )


class EventBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, examples=["Cup final"])
    venue: str = Field(min_length=1, max_length=200, examples=["National Stadium"])
    starts_at: AwareDatetime
    currency: str = Field(pattern=r"^[A-Za-z]{3}$", examples=["usd"])
    sales_start: AwareDatetime | None = None
    sales_end: AwareDatetime | None = Field(default=None, description="default: starts_at")
    sections: list[SectionBody] = Field(min_length=1, max_length=MAX_SECTIONS)
    nft: NftBody = Field(default_factory=NftBody)


class SectionPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=64, pattern=IDENTIFIER)
    price: StrictInt | None = None
    capacity: StrictInt | None = Field(default=None, ge=0, le=MAX_CAPACITY)
    seats: list[Annotated[str, Field(min_length=1, max_length=64, pattern=IDENTIFIER)]] | None = (
        Field(default=None, max_length=MAX_SEATS, description="a new section only")
    )


class EventPatch(BaseModel):
    """Changes apply to purchases made from now on; a ticket keeps the price it was sold at."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    venue: str | None = Field(default=None, min_length=1, max_length=200)
    starts_at: AwareDatetime | None = None
    sales_start: AwareDatetime | None = None
    sales_end: AwareDatetime | None = None
    nft: NftBody | None = None
    #: existing sections (by code) get a new price or capacity; unknown codes are added
    sections: list[SectionPatch] | None = Field(default=None, max_length=MAX_SECTIONS)


class SectionView(BaseModel):
    code: str
    price: int
    capacity: int
    seats: list[str] | None


class EventView(BaseModel):
    id: str
    name: str
    venue: str
    starts_at: UtcDateTime
    currency: str
    sales_start: UtcDateTime | None
    sales_end: UtcDateTime | None
    nft: NftBody
    sections: list[SectionView]
    created_at: UtcDateTime


class SectionAvailability(BaseModel):
    code: str
    price: int
    currency: str
    capacity: int
    sold: int
    #: held by purchases not paid yet (holds expire after TICKET_HOLD_SECONDS)
    held: int
    available: int
    #: named seats nobody holds (null for a section without named seats)
    available_seats: list[str] | None


class Availability(BaseModel):
    event_id: str
    on_sale: bool
    sections: list[SectionAvailability]


def _price(settings: Settings, price: int, field: str) -> None:
    low, high = settings.ticket_min_amount_minor, settings.ticket_max_amount_minor
    if not low <= price <= high:
        raise InvalidInput(f"price must be between {low} and {high} minor units", field=field)


def _window(starts_at: datetime, start: datetime | None, end: datetime | None) -> None:
    if end is not None and end > starts_at:
        raise InvalidInput("sales_end must not be after starts_at", field="sales_end")
    if start is not None and start >= (end or starts_at):
        raise InvalidInput("sales_start must be before the end of sales", field="sales_start")


def _seat_count(sections: list[TicketEventSection]) -> int:
    return sum(len(s.seats or []) for s in sections)


def _view(event: TicketEvent, sections: list[TicketEventSection]) -> EventView:
    return EventView(
        id=event.id,
        name=event.name,
        venue=event.venue,
        starts_at=events.aware(event.starts_at) or event.starts_at,
        currency=event.currency,
        sales_start=events.aware(event.sales_start),
        sales_end=events.aware(event.sales_end),
        nft=NftBody(
            name=event.nft_name,
            symbol=event.nft_symbol,
            metadata_base_uri=event.nft_metadata_base_uri,
        ),
        sections=[
            SectionView(code=s.code, price=s.price_minor, capacity=s.capacity, seats=s.seats)
            for s in sections
        ],
        created_at=events.aware(event.created_at) or event.created_at,
    )


def _section_row(event_id: str, body: SectionBody) -> TicketEventSection:
    return TicketEventSection(
        event_id=event_id,
        code=body.code,
        price_minor=body.price,
        capacity=len(body.seats) if body.seats is not None else int(body.capacity or 0),
        seats=body.seats,
        lock_version=0,
    )


def _check_seats_unique(sections: list[TicketEventSection], field: str) -> None:
    seen: set[str] = set()
    for section in sections:
        for seat in section.seats or []:
            if seat in seen:
                raise InvalidInput(f"seat {seat} is in two sections", field=field)
            seen.add(seat)
    if len(seen) > MAX_SEATS:
        raise InvalidInput(f"at most {MAX_SEATS} named seats per event", field=field)


async def create_event(ctx: Context, principal: Principal, body: EventBody) -> EventView:
    """Put an event on sale: its currency, its sections' prices and places (venue staff)."""
    settings = ctx.settings
    currency = body.currency.lower()
    if currency not in settings.ticket_currencies:
        raise InvalidInput(
            f"currency must be one of {', '.join(settings.ticket_currencies)}", field="currency"
        )
    codes = [s.code for s in body.sections]
    if len(set(codes)) != len(codes):
        raise InvalidInput("section codes must be distinct", field="sections")
    for index, section in enumerate(body.sections):
        _price(settings, section.price, f"sections.{index}.price")
    _window(body.starts_at, body.sales_start, body.sales_end)
    async with ctx.sessions.begin() as session:
        event = TicketEvent(
            tenant=principal.tenant,
            name=body.name,
            venue=body.venue,
            starts_at=body.starts_at.astimezone(UTC),
            currency=currency,
            sales_start=body.sales_start.astimezone(UTC) if body.sales_start else None,
            sales_end=body.sales_end.astimezone(UTC) if body.sales_end else None,
            nft_name=body.nft.name,
            nft_symbol=body.nft.symbol,
            nft_metadata_base_uri=body.nft.metadata_base_uri,
            created_by=principal.subject,
        )
        session.add(event)
        await session.flush()
        rows = [_section_row(event.id, s) for s in body.sections]
        _check_seats_unique(rows, "sections")
        session.add_all(rows)
        await session.flush()
        return _view(event, sorted(rows, key=lambda s: s.code))


async def list_events(
    ctx: Context, principal: Principal, *, limit: int = 50, offset: int = 0
) -> list[EventView]:
    """The tenant's events, soonest first."""
    async with ctx.reads() as session:
        found = list(
            (
                await session.execute(
                    select(TicketEvent)
                    .where(TicketEvent.tenant == principal.tenant)
                    .order_by(TicketEvent.starts_at, TicketEvent.id)
                    .limit(limit)
                    .offset(offset)
                )
            ).scalars()
        )
        return [_view(e, await events.sections(session, e.id)) for e in found]


async def get_event(ctx: Context, principal: Principal, event_id: str) -> EventView:
    """The event, if it is the caller's tenant's (else 404)."""
    async with ctx.reads() as session:
        event = await events.get_event(session, principal.tenant, event_id)
        return _view(event, await events.sections(session, event.id))


async def patch_event(
    ctx: Context, principal: Principal, event_id: str, body: EventPatch
) -> EventView:
    """Change an event. The currency cannot change; a section's capacity cannot drop below what
    is sold or held; named seats of an existing section cannot change."""
    async with ctx.sessions.begin() as session:
        event = await events.get_event(session, principal.tenant, event_id)
        starts_at = body.starts_at or events.aware(event.starts_at)
        assert starts_at is not None
        start = body.sales_start if "sales_start" in body.model_fields_set else event.sales_start
        end = body.sales_end if "sales_end" in body.model_fields_set else event.sales_end
        _window(starts_at, events.aware(start), events.aware(end))
        for name in ("name", "venue"):
            if getattr(body, name) is not None:
                setattr(event, name, getattr(body, name))
        event.starts_at = starts_at.astimezone(UTC)
        event.sales_start = events.aware(start)
        event.sales_end = events.aware(end)
        if body.nft is not None:
            for field in body.nft.model_fields_set:
                column = "nft_" + field if field != "metadata_base_uri" else "nft_metadata_base_uri"
                setattr(event, column, getattr(body.nft, field))
        if body.sections:
            await _patch_sections(session, event, body.sections, ctx.settings)
        await session.flush()
        return _view(event, await events.sections(session, event.id))


async def _patch_sections(
    session: AsyncSession,
    event: TicketEvent,
    patches: list[SectionPatch],
    settings: Settings,
) -> None:
    uses = {u.section.code: u for u in await events.usage(session, event)}
    added = []
    for index, patch in enumerate(patches):
        field = f"sections.{index}"
        if patch.price is not None:
            _price(settings, patch.price, f"{field}.price")
        use = uses.get(patch.code)
        if use is None:
            if patch.price is None or (patch.capacity is None) == (patch.seats is None):
                raise InvalidInput(
                    "a new section needs a price and either capacity or seats", field=field
                )
            new = SectionBody(
                code=patch.code, price=patch.price, capacity=patch.capacity, seats=patch.seats
            )
            added.append(_section_row(event.id, new))
            continue
        section = use.section
        if patch.seats is not None:
            raise InvalidInput("the seats of an existing section cannot change", field=field)
        if patch.capacity is not None:
            if section.seats:
                raise InvalidInput("a section with named seats has no capacity", field=field)
            if patch.capacity < use.sold + use.held:
                raise InvalidInput(
                    f"{use.sold + use.held} places are sold or held", field=f"{field}.capacity"
                )
            section.capacity = patch.capacity
        if patch.price is not None:
            section.price_minor = patch.price
    if added:
        _check_seats_unique([u.section for u in uses.values()] + added, "sections")
        session.add_all(added)


async def availability(ctx: Context, principal: Principal, event_id: str) -> Availability:
    """What is left: per section, places sold, held and free; for named seats, which."""
    async with ctx.reads() as session:
        event = await events.get_event(session, principal.tenant, event_id)
        uses = await events.usage(session, event)
    on_sale = True
    try:
        events.sales_open(event, datetime.now(UTC))
    except Conflict:  # closed, or not open yet
        on_sale = False
    return Availability(
        event_id=event.id,
        on_sale=on_sale,
        sections=[
            SectionAvailability(
                code=u.section.code,
                price=u.section.price_minor,
                currency=event.currency,
                capacity=u.section.capacity,
                sold=u.sold,
                held=u.held,
                available=max(u.section.capacity - u.sold - u.held, 0),
                available_seats=(
                    [s for s in u.section.seats if s not in u.taken_seats]
                    if u.section.seats is not None
                    else None
                ),
            )
            for u in uses
        ],
    )
