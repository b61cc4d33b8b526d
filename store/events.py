"""The event catalogue and seat holds.

A place is held under its section's row lock: every hold on a section first bumps the section's
``lock_version`` (an UPDATE, so the row is locked until the transaction ends), drops the
section's expired holds, then counts or inserts. Two purchases of one section therefore run one
after the other, never check-then-insert side by side; the unique (tenant, event, seat)
constraint on ``seat_holds`` backs named seats up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from domain.errors import Conflict, InvalidInput, NotFound, SeatTaken
from store.models import SeatHold, TicketEvent, TicketEventSection, utcnow

HELD = "held"
SOLD = "sold"


@dataclass(frozen=True)
class HeldPlace:
    section: str
    #: the named seat, or the section's code for a place without a named seat
    seat: str
    price_minor: int
    currency: str


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes (stored as UTC)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


async def get_event(session: AsyncSession, tenant: str, event_id: str) -> TicketEvent:
    """The tenant's event; another tenant's or an unknown one is NotFound (field ``event_id``)."""
    event = await session.get(TicketEvent, event_id)
    if event is None or event.tenant != tenant:
        raise NotFound(f"event {event_id} not found", field="event_id")
    return event


async def sections(session: AsyncSession, event_id: str) -> list[TicketEventSection]:
    rows = await session.execute(
        select(TicketEventSection)
        .where(TicketEventSection.event_id == event_id)
        .order_by(TicketEventSection.code)
    )
    return list(rows.scalars())


def _active() -> ColumnElement[bool]:
    """A hold that still counts: sold, never expiring, or not expired yet."""
    return or_(
        SeatHold.status == SOLD,
        SeatHold.expires_at.is_(None),
        SeatHold.expires_at > utcnow(),
    )


@dataclass(frozen=True)
class SectionUse:
    section: TicketEventSection
    sold: int
    held: int
    taken_seats: frozenset[str]


async def usage(session: AsyncSession, event: TicketEvent) -> list[SectionUse]:
    """Each section with its sold and held places (expired holds do not count)."""
    found = await sections(session, event.id)
    rows = (
        await session.execute(
            select(SeatHold.section_id, SeatHold.status, SeatHold.seat).where(
                SeatHold.section_id.in_([s.id for s in found]), _active()
            )
        )
    ).all()
    result = []
    for section in found:
        mine = [r for r in rows if r.section_id == section.id]
        result.append(
            SectionUse(
                section=section,
                sold=sum(r.status == SOLD for r in mine),
                held=sum(r.status != SOLD for r in mine),
                taken_seats=frozenset(r.seat for r in mine if r.seat is not None),
            )
        )
    return result


def sales_open(event: TicketEvent, now: datetime) -> None:
    start, end = aware(event.sales_start), aware(event.sales_end) or aware(event.starts_at)
    if start is not None and now < start:
        raise Conflict(f"sales for event {event.id} open at {start.isoformat()}", field="event_id")
    if end is not None and now >= end:
        raise Conflict(f"sales for event {event.id} are closed", field="event_id")


def locate(
    found: list[TicketEventSection], seat: str | None, section_code: str | None
) -> TicketEventSection:
    """The section a purchase names, by its seat or its code."""
    if seat is not None:
        for section in found:
            if section.seats and seat in section.seats:
                if section_code is not None and section.code != section_code:
                    raise InvalidInput(
                        f"seat {seat} is in section {section.code}, not {section_code}",
                        field="seat",
                    )
                return section
        raise InvalidInput(f"the event has no seat {seat}", field="seat")
    for section in found:
        if section.code == section_code:
            if section.seats:
                raise InvalidInput(
                    f"section {section.code} has named seats: name one", field="seat"
                )
            return section
    raise InvalidInput(f"the event has no section {section_code}", field="section")


async def hold(
    session: AsyncSession,
    event: TicketEvent,
    *,
    seat: str | None,
    section_code: str | None,
    purchase_id: str,
    hold_seconds: int,
) -> HeldPlace:
    """Hold a place for ``purchase_id`` until ``hold_seconds`` from now, or SeatTaken (409)."""
    section = locate(await sections(session, event.id), seat, section_code)
    # the section's row lock: holds on this section wait here for each other
    await session.execute(
        update(TicketEventSection)
        .where(TicketEventSection.id == section.id)
        .values(lock_version=TicketEventSection.lock_version + 1)
    )
    now = utcnow()
    await session.execute(
        delete(SeatHold).where(
            SeatHold.section_id == section.id,
            SeatHold.status == HELD,
            SeatHold.expires_at.is_not(None),
            SeatHold.expires_at <= now,
        )
    )
    if seat is None:
        count = (
            await session.execute(
                select(func.count()).select_from(SeatHold).where(SeatHold.section_id == section.id)
            )
        ).scalar_one()
        if count >= section.capacity:
            raise SeatTaken(f"section {section.code} is sold out", field="section")
    try:
        async with session.begin_nested():
            session.add(
                SeatHold(
                    tenant=event.tenant,
                    event_id=event.id,
                    seat=seat,
                    section_id=section.id,
                    purchase_id=purchase_id,
                    status=HELD,
                    expires_at=now + timedelta(seconds=hold_seconds),
                )
            )
            await session.flush()
    except IntegrityError as exc:
        raise SeatTaken(
            f"seat {seat} of event {event.id} is already sold or being bought", field="seat"
        ) from exc
    return HeldPlace(
        section=section.code,
        seat=seat if seat is not None else section.code,
        price_minor=section.price_minor,
        currency=event.currency,
    )


async def mark_sold(session: AsyncSession, purchase_id: str) -> bool:
    """The purchase is paid: its hold stops expiring. False when the hold is gone (it expired
    and another buyer took the place, or it was released)."""
    result = await session.execute(
        update(SeatHold)
        .where(SeatHold.purchase_id == purchase_id)
        .values(status=SOLD, expires_at=None)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def holds_of(session: AsyncSession, purchase_id: str) -> SeatHold | None:
    return (
        await session.execute(select(SeatHold).where(SeatHold.purchase_id == purchase_id))
    ).scalar_one_or_none()
