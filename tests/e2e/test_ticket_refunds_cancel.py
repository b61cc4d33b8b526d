"""Refunds that void tickets, Stripe's refund verdicts, and cancellations that compensate, through
the API against the sandboxes (Stripe, LiteSVM's Token-2022)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from sqlalchemy import select
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import CancelledError

from providers.solana.client import parse_pubkey
from store.models import TicketRefund
from tests.e2e.test_ticket_catalogue import availability
from tests.e2e.test_tickets import buy, intents_for, solana, until
from tests.fixtures.events import create_event
from tests.fixtures.stack import Stack, eventually, unique_tenant
from workflows.tickets import Refund

pytestmark = pytest.mark.usefixtures("balanced_ledger")


async def frozen(stack: Stack, mint: str) -> bool:
    client = await solana(stack)
    try:
        held = await client.holder(parse_pubkey(mint))
    finally:
        await client.aclose()
    return held is not None and held[1].frozen


@asynccontextmanager
async def solana_stopped(stack: Stack) -> AsyncIterator[None]:
    """Hold every Solana step (the mint) in its queue until the block ends."""
    admin = stack.platform_admin()  # a provider's stop holds it for every tenant
    stopped = await stack.api.post(
        "/api/v1/rate-limits/emergency-stop", json={"key": "solana"}, headers=admin
    )
    assert stopped.status_code == 200, stopped.text
    try:
        yield
    finally:
        resumed = await stack.api.post(
            "/api/v1/rate-limits/resume", json={"key": "solana"}, headers=admin
        )
        assert resumed.status_code == 200, resumed.text


async def refund_rows(stack: Stack, purchase_id: str) -> list[TicketRefund]:
    async with stack.sessions() as session:
        rows = await session.execute(
            select(TicketRefund).where(TicketRefund.purchase_id == purchase_id)
        )
        return list(rows.scalars())


async def test_a_partial_refund_that_voids_the_ticket_freezes_it_and_frees_the_seat(
    stack: Stack,
) -> None:
    tenant = unique_tenant()
    buyer, venue = stack.auth("ann", tenant), stack.auth("box", tenant, ["venue_admin"])
    event = await create_event(stack, tenant)
    _, accepted = await buy(stack, buyer, event, seat="S-4")
    done = await until(
        stack, accepted["id"], buyer, lambda v: v["status"] == "completed", "completion"
    )
    response = await stack.api.post(
        f"/api/v1/tickets/{accepted['id']}/refund",
        json={"amount": 500, "void_ticket": True, "reason": "row closed"},
        headers=venue,
    )
    assert response.status_code == 202, response.text
    voided = await until(
        stack, accepted["id"], buyer, lambda v: v["status"] == "voided", "the void"
    )
    assert voided["amount_refunded"] == 500
    await eventually(lambda: frozen(stack, done["mint"]), bool, what="the frozen ticket")
    assert "S-4" in (await availability(stack, event["id"], buyer))["SEATS"]["available_seats"]


async def test_a_full_refund_while_the_mint_runs_retires_the_nft_once_minted(
    stack: Stack,
) -> None:
    tenant = unique_tenant()
    buyer, venue = stack.auth("bob", tenant), stack.auth("box", tenant, ["venue_admin"])
    event = await create_event(stack, tenant)
    async with solana_stopped(stack):
        _, accepted = await buy(stack, buyer, event)
        await until(stack, accepted["id"], buyer, lambda v: v["status"] == "minting", "minting")
        response = await stack.api.post(
            f"/api/v1/tickets/{accepted['id']}/refund", json={}, headers=venue
        )
        assert response.status_code == 202, response.text
        await until(
            stack, accepted["id"], buyer, lambda v: v["amount_refunded"] == 2500, "the refund"
        )
    done = await until(
        stack,
        accepted["id"],
        buyer,
        lambda v: v["mint"] is not None and v["status"] == "refunded",
        "the mint, then the void",
        timeout=60,
    )
    await eventually(lambda: frozen(stack, done["mint"]), bool, what="the frozen ticket")


async def test_a_pending_stripe_refund_is_done_only_when_stripe_says_succeeded(
    stack: Stack,
) -> None:
    tenant = unique_tenant()
    buyer, venue = stack.auth("cy", tenant), stack.auth("box", tenant, ["venue_admin"])
    _, accepted = await buy(stack, buyer, await create_event(stack, tenant))
    await until(stack, accepted["id"], buyer, lambda v: v["status"] == "completed", "completion")
    async with httpx.AsyncClient() as http:
        await http.post(f"{stack.stripe.url}/_sandbox/pending-refunds", json={"count": 1})
    response = await stack.api.post(
        f"/api/v1/tickets/{accepted['id']}/refund", json={"amount": 700}, headers=venue
    )
    assert response.status_code == 202, response.text
    handle = stack.handle(response.json()["workflow_id"])
    waiting = await eventually(
        lambda: handle.query(Refund.status),
        lambda s: s.status == "waiting_for_stripe",
        what="the refund to wait for Stripe",
    )
    (row,) = await refund_rows(stack, accepted["id"])
    assert row.status == "reserved"
    assert (await until(stack, accepted["id"], buyer, lambda v: True, "a view"))[
        "amount_refunded"
    ] == 0
    async with httpx.AsyncClient() as http:
        await http.post(
            f"{stack.stripe.url}/_sandbox/refunds/{waiting.stripe_refund_id}/settle",
            json={"succeed": True},
        )
    await until(stack, accepted["id"], buyer, lambda v: v["amount_refunded"] == 700, "the refund")
    (row,) = await refund_rows(stack, accepted["id"])
    assert row.status == "succeeded" and row.stripe_refund_id == waiting.stripe_refund_id


async def test_a_failed_stripe_refund_parks_and_cancelling_it_releases_the_reservation(
    stack: Stack,
) -> None:
    tenant = unique_tenant()
    buyer, admin = stack.auth("dee", tenant), stack.auth("ops", tenant, ["admin"])
    _, accepted = await buy(stack, buyer, await create_event(stack, tenant))
    await until(stack, accepted["id"], buyer, lambda v: v["status"] == "completed", "completion")
    async with httpx.AsyncClient() as http:
        await http.post(f"{stack.stripe.url}/_sandbox/pending-refunds", json={"count": 1})
    response = await stack.api.post(
        f"/api/v1/tickets/{accepted['id']}/refund", json={}, headers=admin
    )
    assert response.status_code == 202, response.text
    workflow_id = response.json()["workflow_id"]
    handle = stack.handle(workflow_id)
    waiting = await eventually(
        lambda: handle.query(Refund.status),
        lambda s: s.status == "waiting_for_stripe",
        what="the refund to wait for Stripe",
    )
    async with httpx.AsyncClient() as http:
        await http.post(
            f"{stack.stripe.url}/_sandbox/refunds/{waiting.stripe_refund_id}/settle",
            json={"succeed": False},
        )
    await eventually(
        lambda: handle.query(Refund.status),
        lambda s: s.status == "needs_attention",
        what="the refund to park",
    )
    # the whole amount is still reserved: another refund is refused meanwhile
    refused = await stack.api.post(
        f"/api/v1/tickets/{accepted['id']}/refund", json={"amount": 1}, headers=admin
    )
    assert refused.status_code == 422
    cancelled = await stack.api.delete(f"/api/v1/jobs/{workflow_id}", headers=admin)
    assert cancelled.status_code == 202, cancelled.text
    await eventually(
        lambda: refund_rows(stack, accepted["id"]),
        lambda rows: [r.status for r in rows] == ["failed"],
        what="the reservation to be released",
    )
    job = await eventually(
        lambda: stack.api.get(f"/api/v1/jobs/{workflow_id}", headers=admin),
        lambda r: r.json()["temporal_status"] == "cancelled",
        what="the refund job to end cancelled",
    )
    assert job.status_code == 200
    again = await stack.api.post(f"/api/v1/tickets/{accepted['id']}/refund", json={}, headers=admin)
    assert again.status_code == 202, again.text
    await until(
        stack, accepted["id"], buyer, lambda v: v["amount_refunded"] == 2500, "the new refund"
    )


async def test_cancelling_a_purchase_waiting_for_3ds_cancels_the_intent_and_frees_the_seat(
    stack: Stack,
) -> None:
    tenant = unique_tenant()
    buyer = stack.auth("eve", tenant)
    event = await create_event(stack, tenant)
    _, accepted = await buy(
        stack, buyer, event, seat="S-5", payment_method="pm_card_authenticationRequired"
    )
    await until(
        stack, accepted["id"], buyer, lambda v: v["status"] == "requires_action", "3-D Secure"
    )
    cancelled = await stack.api.delete(f"/api/v1/jobs/{accepted['workflow_id']}", headers=buyer)
    assert cancelled.status_code == 202, cancelled.text
    done = await until(
        stack, accepted["id"], buyer, lambda v: v["status"] == "cancelled", "the cancel"
    )
    assert done["amount_captured"] == 0
    (intent,) = intents_for(stack, accepted["id"])
    assert intent["status"] == "canceled"
    assert "S-5" in (await availability(stack, event["id"], buyer))["SEATS"]["available_seats"]


async def test_clearing_the_queue_after_payment_refunds_and_retires_the_minted_nft(
    stack: Stack,
) -> None:
    tenant = unique_tenant()
    buyer, admin = stack.auth("fay", tenant), stack.auth("ops", tenant, ["admin"])
    event = await create_event(stack, tenant)
    async with solana_stopped(stack):
        _, accepted = await buy(stack, buyer, event, seat="S-6")
        await until(stack, accepted["id"], buyer, lambda v: v["status"] == "minting", "minting")
        cleared = await stack.api.post(
            "/api/v1/queues/ticket_purchase/clear?confirm=true", headers=admin
        )
        assert cleared.status_code == 200, cleared.text
    done = await until(
        stack,
        accepted["id"],
        buyer,
        lambda v: v["status"] == "cancelled",
        "the cancel's compensation",
        timeout=60,
    )
    assert done["amount_refunded"] == done["amount_captured"] == 2500
    assert done["mint"] is not None
    await eventually(lambda: frozen(stack, done["mint"]), bool, what="the retired ticket")
    assert "S-6" in (await availability(stack, event["id"], buyer))["SEATS"]["available_seats"]
    with pytest.raises(WorkflowFailureError) as failure:
        await stack.handle(accepted["workflow_id"]).result()
    assert isinstance(failure.value.cause, CancelledError)


async def test_refund_requests_are_decided_by_the_venue_of_the_tenant(stack: Stack) -> None:
    tenant = unique_tenant()
    buyer, venue = stack.auth("gil", tenant), stack.auth("box", tenant, ["venue_admin"])
    _, accepted = await buy(stack, buyer, await create_event(stack, tenant))
    await until(stack, accepted["id"], buyer, lambda v: v["status"] == "completed", "completion")
    too_much = await stack.api.post(
        f"/api/v1/tickets/{accepted['id']}/refund-requests", json={"amount": 2501}, headers=buyer
    )
    assert too_much.status_code == 422 and too_much.json()["error"]["field"] == "amount"
    asked = await stack.api.post(
        f"/api/v1/tickets/{accepted['id']}/refund-requests", json={}, headers=buyer
    )
    assert asked.status_code == 201, asked.text
    request_id = asked.json()["id"]
    decide = f"/api/v1/tickets/refund-requests/{request_id}"
    # the buyer cannot approve their own request; another tenant's venue does not see it
    assert (await stack.api.post(f"{decide}/approve", headers=buyer)).status_code == 403
    other_venue = stack.auth("box", unique_tenant(), ["venue_admin"])
    assert (await stack.api.post(f"{decide}/approve", headers=other_venue)).status_code == 404
    listed = await stack.api.get("/api/v1/tickets/refund-requests", headers=other_venue)
    assert listed.json() == []
    stranger = stack.auth("someone", tenant)
    assert (await stack.api.get("/api/v1/tickets/refund-requests", headers=stranger)).json() == []
    declined = await stack.api.post(
        f"{decide}/decline", json={"reason": "no refunds after the draw"}, headers=venue
    )
    assert declined.status_code == 200, declined.text
    assert (declined.json()["status"], declined.json()["decided_by"]) == ("declined", "box")
    assert (await stack.api.post(f"{decide}/approve", headers=venue)).status_code == 409
    seen = await stack.api.get("/api/v1/tickets/refund-requests", headers=buyer)
    assert [(r["status"], r["decision_reason"]) for r in seen.json()] == [
        ("declined", "no refunds after the draw")
    ]
    assert (await refund_rows(stack, accepted["id"])) == []
