"""The event catalogue and seat holds: the venue sets prices and places, buyers take what is
left, one place is sold once however many race for it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from store.models import SeatHold, TicketEvent, TicketPurchase
from tests.e2e.test_tickets import body, buy, intents_for, until
from tests.fixtures.events import create_event
from tests.fixtures.stack import Stack, eventually, unique_tenant

pytestmark = pytest.mark.usefixtures("balanced_ledger")

EVENTS = "/api/v1/events"


async def availability(stack: Stack, event_id: str, headers: dict[str, str]) -> dict[str, Any]:
    response = await stack.api.get(f"{EVENTS}/{event_id}/availability", headers=headers)
    assert response.status_code == 200, response.text
    return {s["code"]: s for s in response.json()["sections"]}


async def test_venue_runs_the_catalogue_buyers_read_it_other_tenants_do_not_see_it(
    stack: Stack,
) -> None:
    tenant = unique_tenant()
    user = stack.auth("ann", tenant)
    event = await create_event(stack, tenant, price=4200)
    assert event["currency"] == "usd"
    assert {s["code"]: s["capacity"] for s in event["sections"]} == {"FLOOR": 1000, "SEATS": 20}
    # a buyer reads, lists and sees availability, but cannot create or change
    assert (await stack.api.get(f"{EVENTS}/{event['id']}", headers=user)).status_code == 200
    listed = await stack.api.get(EVENTS, headers=user)
    assert [e["id"] for e in listed.json()] == [event["id"]]
    refused = await stack.api.post(EVENTS, json={**_event_body(), "name": "mine"}, headers=user)
    assert refused.status_code == 403
    patched = await stack.api.patch(
        f"{EVENTS}/{event['id']}", json={"sections": [{"code": "FLOOR", "price": 50}]}, headers=user
    )
    assert patched.status_code == 403
    # an admin of the tenant may change it; the new price applies to purchases from now on
    admin = stack.auth("boss", tenant, ["admin"])
    changed = await stack.api.patch(
        f"{EVENTS}/{event['id']}",
        json={"name": "Cup final (replay)", "sections": [{"code": "FLOOR", "price": 5100}]},
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    assert {s["code"]: s["price"] for s in changed.json()["sections"]} == {
        "FLOOR": 5100,
        "SEATS": 4200,
    }
    # another tenant: 404 for reading, availability, changing and buying
    other = unique_tenant()
    stranger, stranger_venue = stack.auth("eve", other), stack.auth("v", other, ["venue_admin"])
    for path in (f"{EVENTS}/{event['id']}", f"{EVENTS}/{event['id']}/availability"):
        assert (await stack.api.get(path, headers=stranger)).status_code == 404
    assert (
        await stack.api.patch(f"{EVENTS}/{event['id']}", json={"name": "x"}, headers=stranger_venue)
    ).status_code == 404
    assert (await stack.api.get(EVENTS, headers=stranger)).json() == []
    bought = await stack.api.post(
        "/api/v1/tickets/purchase", json=body(event["id"]), headers=stranger
    )
    assert bought.status_code == 404 and bought.json()["error"]["field"] == "event_id"


async def test_the_price_and_currency_are_the_catalogues(stack: Stack) -> None:
    tenant = unique_tenant()
    headers = stack.auth("bob", tenant)
    event = await create_event(
        stack,
        tenant,
        currency="eur",
        sections=[
            {"code": "VIP", "price": 12_000, "seats": ["V-1", "V-2"]},
            {"code": "FLOOR", "price": 3_500, "capacity": 5},
        ],
    )
    # the cheap trick of old: sending a price is refused, nothing is written or charged
    before = stack.stripe_state.requests
    cheap = await stack.api.post(
        "/api/v1/tickets/purchase",
        json={**body(event["id"], seat="V-1"), "amount": 50, "currency": "eur"},
        headers=headers,
    )
    assert cheap.status_code == 422 and cheap.json()["error"]["field"] == "amount"
    assert stack.stripe_state.requests == before
    _, vip = await buy(stack, headers, event, seat="V-1")
    _, floor = await buy(stack, headers, event)
    for accepted, price, seat in ((vip, 12_000, "V-1"), (floor, 3_500, "FLOOR")):
        done = await until(
            stack, accepted["id"], headers, lambda v: v["status"] == "completed", "completion"
        )
        assert (done["amount_minor"], done["currency"], done["seat"]) == (price, "eur", seat)
        (intent,) = intents_for(stack, accepted["id"])
        assert (intent["amount_received"], intent["currency"]) == (price, "eur")
    left = await availability(stack, event["id"], headers)
    assert left["VIP"]["available_seats"] == ["V-2"] and left["VIP"]["sold"] == 1
    assert (left["FLOOR"]["sold"], left["FLOOR"]["available"]) == (1, 4)


def _event_body(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": "Night",
        "venue": "Hall",
        "starts_at": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
        "currency": "usd",
        "sections": [{"code": "A", "price": 2000, "capacity": 10}],
    }
    values.update(overrides)
    return values


BAD_EVENTS = [
    pytest.param({"currency": "jpy"}, "currency", id="currency-not-sold"),
    pytest.param(
        {"sections": [{"code": "A", "price": 10, "capacity": 1}]}, "sections.0.price", id="cheap"
    ),
    pytest.param(
        {"sections": [{"code": "A", "price": 10**9, "capacity": 1}]},
        "sections.0.price",
        id="dear",
    ),
    pytest.param(
        {"sections": [{"code": "A", "price": 25.5, "capacity": 1}]},
        "sections.0.price",
        id="fractional",
    ),
    pytest.param(
        {"sections": [{"code": "A", "price": 2000, "capacity": 1, "seats": ["A-1"]}]},
        "sections.0",
        id="capacity-and-seats",
    ),
    pytest.param(
        {
            "sections": [
                {"code": "A", "price": 2000, "seats": ["X-1"]},
                {"code": "B", "price": 2000, "seats": ["X-1"]},
            ]
        },
        "sections",
        id="seat-twice",
    ),
    pytest.param({"sections": []}, "sections", id="no-sections"),
    pytest.param({"starts_at": "2030-01-01T20:00:00"}, "starts_at", id="naive-time"),
    pytest.param(
        {"sales_end": (datetime.now(UTC) + timedelta(days=9)).isoformat()},
        "sales_end",
        id="sales-after-start",
    ),
]


@pytest.mark.parametrize(("override", "field_name"), BAD_EVENTS)
async def test_bad_event_is_refused_naming_the_field(
    stack: Stack, override: dict[str, Any], field_name: str
) -> None:
    tenant = unique_tenant()
    response = await stack.api.post(
        EVENTS, json=_event_body(**override), headers=stack.auth("v", tenant, ["venue_admin"])
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field_name
    async with stack.sessions() as session:
        assert (
            await session.execute(select(TicketEvent).where(TicketEvent.tenant == tenant))
        ).first() is None


async def test_sales_window_is_enforced(stack: Stack) -> None:
    tenant = unique_tenant()
    headers = stack.auth("cy", tenant)
    later = datetime.now(UTC) + timedelta(days=1)
    event = await create_event(stack, tenant, sales_start=later.isoformat())
    early = await stack.api.post(
        "/api/v1/tickets/purchase", json=body(event["id"]), headers=headers
    )
    assert early.status_code == 409 and early.json()["error"]["field"] == "event_id"
    response = await stack.api.get(f"{EVENTS}/{event['id']}/availability", headers=headers)
    assert response.json()["on_sale"] is False


async def test_two_buyers_racing_for_one_seat_one_wins_the_other_gets_409(stack: Stack) -> None:
    tenant = unique_tenant()
    event = await create_event(stack, tenant)
    first, second = await asyncio.gather(
        *(
            stack.api.post(
                "/api/v1/tickets/purchase",
                json=body(event["id"], seat="S-7"),
                headers=stack.auth(name, tenant),
            )
            for name in ("ann", "bob")
        )
    )
    assert sorted([first.status_code, second.status_code]) == [202, 409]
    loser = first if first.status_code == 409 else second
    assert loser.json()["error"]["field"] == "seat"
    async with stack.sessions() as session:
        bought = (
            await session.execute(
                select(func.count())
                .select_from(TicketPurchase)
                .where(TicketPurchase.tenant == tenant)
            )
        ).scalar_one()
    assert bought == 1


async def test_no_overselling_50_buyers_for_10_places(stack: Stack) -> None:
    tenant = unique_tenant()
    event = await create_event(
        stack, tenant, sections=[{"code": "FLOOR", "price": 2500, "capacity": 10}]
    )
    responses = await asyncio.gather(
        *(
            stack.api.post(
                "/api/v1/tickets/purchase",
                json=body(event["id"]),
                headers=stack.auth(f"buyer-{n}", tenant),
            )
            for n in range(50)
        )
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [202] * 10 + [409] * 40, codes
    assert all(r.json()["error"]["field"] == "section" for r in responses if r.status_code == 409)
    async with stack.sessions() as session:
        holds = (
            await session.execute(
                select(func.count()).select_from(SeatHold).where(SeatHold.event_id == event["id"])
            )
        ).scalar_one()
    assert holds == 10
    won = [r.json()["id"] for r in responses if r.status_code == 202]
    headers = stack.auth("venue", tenant, ["venue_admin"])
    for purchase_id in won:
        await until(
            stack,
            purchase_id,
            headers,
            lambda v: v["status"] == "completed",
            "the ten purchases",
            timeout=90,
        )
    left = await availability(stack, event["id"], headers)
    assert (left["FLOOR"]["sold"], left["FLOOR"]["held"], left["FLOOR"]["available"]) == (
        10,
        0,
        0,
    )


async def test_hold_released_when_payment_fails_and_when_fully_refunded(stack: Stack) -> None:
    tenant = unique_tenant()
    headers = stack.auth("dee", tenant)
    venue = stack.auth("venue", tenant, ["venue_admin"])
    event = await create_event(stack, tenant)
    _, declined = await buy(
        stack, headers, event, seat="S-2", payment_method="pm_card_chargeDeclined"
    )
    await until(
        stack, declined["id"], headers, lambda v: v["status"] == "payment_failed", "the decline"
    )
    assert "S-2" in (await availability(stack, event["id"], headers))["SEATS"]["available_seats"]
    _, bought = await buy(stack, headers, event, seat="S-2")
    await until(stack, bought["id"], headers, lambda v: v["status"] == "completed", "completion")
    assert (
        "S-2" not in (await availability(stack, event["id"], headers))["SEATS"]["available_seats"]
    )
    refund = await stack.api.post(f"/api/v1/tickets/{bought['id']}/refund", json={}, headers=venue)
    assert refund.status_code == 202, refund.text
    await until(
        stack, bought["id"], headers, lambda v: v["status"] == "refunded", "the full refund"
    )
    assert "S-2" in (await availability(stack, event["id"], headers))["SEATS"]["available_seats"]
    _, again = await buy(stack, headers, event, seat="S-2")
    await until(stack, again["id"], headers, lambda v: v["status"] == "completed", "the resale")


async def test_an_expired_hold_goes_to_the_next_buyer_and_the_late_payment_is_refunded(
    stack: Stack,
) -> None:
    tenant = unique_tenant()
    slow, quick = stack.auth("slow", tenant), stack.auth("quick", tenant)
    event = await create_event(stack, tenant)
    _, first = await buy(
        stack, slow, event, seat="S-9", payment_method="pm_card_authenticationRequired"
    )
    waiting = await until(
        stack, first["id"], slow, lambda v: v["status"] == "requires_action", "requires_action"
    )
    taken = await stack.api.post(
        "/api/v1/tickets/purchase", json=body(event["id"], seat="S-9"), headers=quick
    )
    assert taken.status_code == 409  # held
    async with stack.sessions.begin() as session:  # TICKET_HOLD_SECONDS pass
        await session.execute(
            update(SeatHold)
            .where(SeatHold.purchase_id == first["id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert (await availability(stack, event["id"], slow))["SEATS"]["held"] == 0
    _, second = await buy(stack, quick, event, seat="S-9")
    await until(stack, second["id"], quick, lambda v: v["status"] == "completed", "the new buyer")
    async with httpx.AsyncClient() as http:  # the first buyer authenticates, too late
        await http.post(
            f"{stack.stripe.url}/_sandbox/payment_intents/{waiting['payment_intent']}/authenticate",
            json={"succeed": True},
        )
    late = await until(
        stack, first["id"], slow, lambda v: v["status"] == "refunded", "the late payment's refund"
    )
    assert late["amount_refunded"] == late["amount_captured"] == 2500 and late["mint"] is None
    assert "sold to another buyer" in late["failure_reason"]
    await eventually(
        lambda: availability(stack, event["id"], quick),
        lambda a: a["SEATS"]["sold"] == 1 and "S-9" not in a["SEATS"]["available_seats"],
        what="the seat to stay with the second buyer",
    )
