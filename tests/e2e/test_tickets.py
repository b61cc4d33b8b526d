"""Ticket purchases through the API, with the real clients against the sandboxes: Stripe (the
``stripe`` SDK), Solana (LiteSVM running the real Token-2022 program), SMTP (``aiosmtplib`` into a
catcher) and venue webhooks verified by a receiver using ``standardwebhooks``."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from prometheus_client.parser import text_string_to_metric_families
from solders.keypair import Keypair
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from providers.solana.client import SolanaTicketClient, parse_pubkey
from sandbox.serve import RunningServer, serve
from sandbox.stripe import sign
from store.models import TicketPurchase, WebhookEndpoint
from tests.fixtures.events import create_event
from tests.fixtures.stack import Stack, eventually, unique_tenant

pytestmark = pytest.mark.usefixtures("balanced_ledger")


@dataclass
class Receiver:
    """A venue's webhook endpoint: keeps what it receives; can be told to answer 410."""

    server: RunningServer
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answer: int = 200

    @property
    def url(self) -> str:
        return f"{self.server.url}/hook"

    def verified(self, secret: str) -> list[dict[str, Any]]:
        """Every delivery whose Standard Webhooks signature is valid for ``secret``."""
        events = []
        for headers, body in self.received:
            events.append(Webhook(secret).verify(body, headers))
        return events


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    app = FastAPI()
    made: list[Receiver] = []

    @app.post("/hook")
    async def hook(request: Request) -> Response:
        made[0].received.append((dict(request.headers), await request.body()))
        return Response(status_code=made[0].answer)

    server = await serve(app)
    made.append(Receiver(server))
    yield made[0]
    await server.stop()


def wallet() -> str:
    return str(Keypair().pubkey())


def body(event_id: str, /, **overrides: Any) -> dict[str, Any]:
    """A purchase of a place of ``event_id`` (from ``create_event``): on the FLOOR unless a
    ``seat`` is named."""
    values = {
        "event_id": event_id,
        "payment_method": "pm_card_visa",
        "buyer_email": f"buyer-{uuid.uuid4().hex[:6]}@example.com",
        "buyer_wallet": wallet(),
    }
    if "seat" not in overrides:
        values["section"] = "FLOOR"
    values.update(overrides)
    return values


async def buy(
    stack: Stack, headers: dict[str, str], event: dict[str, Any], **overrides: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    payload = body(event["id"], **overrides)
    response = await stack.api.post("/api/v1/tickets/purchase", json=payload, headers=headers)
    assert response.status_code == 202, response.text
    return payload, response.json()


async def view(stack: Stack, purchase_id: str, headers: dict[str, str]) -> dict[str, Any]:
    response = await stack.api.get(f"/api/v1/tickets/purchase/{purchase_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def until(
    stack: Stack,
    purchase_id: str,
    headers: dict[str, str],
    check: Any,
    what: str,
    timeout: float = 30,
) -> dict[str, Any]:
    return await eventually(
        lambda: view(stack, purchase_id, headers), check, timeout=timeout, what=what
    )


async def register(stack: Stack, tenant: str, url: str) -> str:
    response = await stack.api.post(
        "/api/v1/webhook-endpoints",
        json={"url": url},
        headers=stack.auth("venue", tenant, ["venue_admin"]),
    )
    assert response.status_code == 201, response.text
    return str(response.json()["secret"])


def intents_for(stack: Stack, purchase_id: str) -> list[dict[str, Any]]:
    return [
        i
        for i in stack.stripe_state.intents.values()
        if i["metadata"].get("purchase_id") == purchase_id
    ]


async def solana(stack: Stack) -> SolanaTicketClient:
    return SolanaTicketClient(stack.solana.url, stack.solana.authority, poll_seconds=0.05)


async def test_purchase_charges_once_mints_emails_and_signs_a_webhook(
    stack: Stack, receiver: Receiver
) -> None:
    tenant = unique_tenant()
    headers = stack.auth("ann", tenant)
    secret = await register(stack, tenant, receiver.url)
    event = await create_event(stack, tenant)
    sent, accepted = await buy(stack, headers, event, seat="S-3")
    done = await until(
        stack,
        accepted["id"],
        headers,
        lambda v: v["status"] == "completed",
        "the purchase to complete",
    )
    # one charge in Stripe
    (intent,) = intents_for(stack, accepted["id"])
    assert intent["status"] == "succeeded" and intent["amount_received"] == 2500
    assert done["amount_captured"] == 2500 and done["payment_intent"] == intent["id"]
    # the NFT is in the buyer's token account, its metadata on chain
    client = await solana(stack)
    mint = await client.mint(parse_pubkey(done["mint"]))
    holder = await client.holder(parse_pubkey(done["mint"]))
    await client.aclose()
    assert mint is not None and mint.supply == 1 and mint.mint_authority is None
    assert mint.metadata is not None and mint.metadata.additional == {
        "event": event["id"],
        "seat": "S-3",
        "ticket_id": accepted["id"],
    }
    assert (mint.metadata.name, mint.metadata.symbol) == ("Cup final", "CUP")
    assert (done["seat"], done["section"], done["amount_minor"], done["currency"]) == (
        "S-3",
        "SEATS",
        2500,
        "usd",
    )
    assert holder is not None and str(holder[1].owner) == sent["buyer_wallet"]
    # the emails are in the catcher
    mails = await stack.mail.wait_for(
        lambda ms: len([m for m in ms if sent["buyer_email"] in m.recipients]) >= 2
    )
    subjects = sorted(m.message["Subject"] for m in mails if sent["buyer_email"] in m.recipients)
    assert any("Payment received" in s for s in subjects) and any(
        "in your wallet" in s for s in subjects
    )
    # the venue got a signed webhook
    await eventually(lambda: _count(receiver), lambda n: n >= 1, what="the venue webhook")
    (event,) = receiver.verified(secret)
    assert event["type"] == "ticket.purchased" and event["data"]["mint"] == done["mint"]


async def _count(receiver: Receiver) -> int:
    return len(receiver.received)


async def test_declined_card_fails_fast_with_its_reason_and_frees_the_seat(stack: Stack) -> None:
    tenant = unique_tenant()
    headers = stack.auth("bea", tenant)
    event = await create_event(stack, tenant)
    _, accepted = await buy(
        stack, headers, event, seat="S-1", payment_method="pm_card_chargeDeclined"
    )
    failed = await until(
        stack, accepted["id"], headers, lambda v: v["status"] == "payment_failed", "the decline"
    )
    assert "declined" in failed["failure_reason"]
    assert failed["mint"] is None and failed["amount_captured"] == 0
    (intent,) = intents_for(stack, accepted["id"])
    assert intent["status"] == "requires_payment_method" and intent["latest_charge"] is None
    again = await stack.api.post(
        "/api/v1/tickets/purchase", json=body(event["id"], seat="S-1"), headers=headers
    )
    assert again.status_code == 202  # the seat was released
    await until(
        stack,
        again.json()["id"],
        headers,
        lambda v: v["status"] == "completed",
        "the second purchase",
    )


async def test_mint_that_never_succeeds_refunds_and_tells_buyer_and_admins(stack: Stack) -> None:
    tenant = unique_tenant()
    headers = stack.auth("cal", tenant)
    event = await create_event(stack, tenant)
    async with httpx.AsyncClient() as http:
        await http.post(f"{stack.solana.url}/_sandbox/fail-mints", json={"count": 1})
    sent, accepted = await buy(stack, headers, event)
    refunded = await until(
        stack,
        accepted["id"],
        headers,
        lambda v: v["status"] == "refunded",
        "the refund",
        timeout=40,
    )
    assert refunded["amount_refunded"] == refunded["amount_captured"] == 2500
    assert "could not be minted" in refunded["failure_reason"]
    (refund,) = refunded["refunds"]
    stripe_refund = stack.stripe_state.refunds[refund["stripe_refund_id"]]
    assert stripe_refund["amount"] == 2500
    await stack.mail.wait_for(
        lambda ms: any(
            sent["buyer_email"] in m.recipients and "Refund" in m.message["Subject"] for m in ms
        )
    )
    await stack.mail.wait_for(
        lambda ms: any(
            "ops@settle.test" in m.recipients and "mint failed" in m.message["Subject"] for m in ms
        )
    )
    with pytest.raises(Exception) as failure:
        await stack.handle(accepted["workflow_id"]).result()
    assert "TicketMintFailed" in repr(failure.value.__cause__) or "could not be minted" in str(
        failure.value.__cause__
    )


async def test_the_same_purchase_requested_twice_is_one_workflow(stack: Stack) -> None:
    tenant = unique_tenant()
    headers = {**stack.auth("dan", tenant), "Idempotency-Key": str(uuid.uuid4())}
    event = await create_event(stack, tenant)
    payload = body(event["id"], seat="S-1")
    first, second = await asyncio.gather(
        stack.api.post("/api/v1/tickets/purchase", json=payload, headers=headers),
        stack.api.post("/api/v1/tickets/purchase", json=payload, headers=headers),
    )
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    await until(
        stack, first.json()["id"], headers, lambda v: v["status"] == "completed", "completion"
    )
    assert len(intents_for(stack, first.json()["id"])) == 1
    other = await stack.api.post(
        "/api/v1/tickets/purchase", json={**payload, "seat": "S-2"}, headers=headers
    )
    assert other.status_code == 409


async def test_partial_refunds_up_to_the_total_then_refused(
    stack: Stack, receiver: Receiver
) -> None:
    tenant = unique_tenant()
    headers = stack.auth("eve", tenant)
    _, accepted = await buy(stack, headers, await create_event(stack, tenant))
    purchase_id = accepted["id"]
    await until(stack, purchase_id, headers, lambda v: v["status"] == "completed", "completion")
    # the buyer cannot refund themselves (they kept a valid ticket for a partial refund)
    own = await stack.api.post(
        f"/api/v1/tickets/{purchase_id}/refund", json={"amount": 1000}, headers=headers
    )
    assert own.status_code == 403
    # they ask; the venue approves
    asked = await stack.api.post(
        f"/api/v1/tickets/{purchase_id}/refund-requests",
        json={"amount": 1000, "reason": "seat moved"},
        headers=headers,
    )
    assert asked.status_code == 201, asked.text
    venue = stack.auth("box-office", tenant, ["venue_admin"])
    pending = await stack.api.get("/api/v1/tickets/refund-requests?status=pending", headers=venue)
    assert [r["id"] for r in pending.json()] == [asked.json()["id"]]
    first = await stack.api.post(
        f"/api/v1/tickets/refund-requests/{asked.json()['id']}/approve", headers=venue
    )
    assert first.status_code == 202, first.text
    twice = await stack.api.post(
        f"/api/v1/tickets/refund-requests/{asked.json()['id']}/approve", headers=venue
    )
    assert twice.status_code == 409
    await until(
        stack, purchase_id, headers, lambda v: v["amount_refunded"] == 1000, "the first refund"
    )
    mine = await stack.api.get("/api/v1/tickets/refund-requests", headers=headers)
    assert [(r["status"], r["refund_id"]) for r in mine.json()] == [
        ("approved", first.json()["id"])
    ]
    rest = await stack.api.post(f"/api/v1/tickets/{purchase_id}/refund", json={}, headers=venue)
    assert rest.status_code == 202, rest.text
    done = await until(
        stack, purchase_id, headers, lambda v: v["amount_refunded"] == 2500, "the full refund"
    )
    assert sorted(r["amount_minor"] for r in done["refunds"]) == [1000, 1500]
    assert (
        sum(
            r["amount"]
            for r in stack.stripe_state.refunds.values()
            if r["payment_intent"] == done["payment_intent"]
        )
        == 2500
    )
    over = await stack.api.post(
        f"/api/v1/tickets/{purchase_id}/refund", json={"amount": 1}, headers=venue
    )
    assert over.status_code == 422 and over.json()["error"]["field"] == "amount"
    # a full refund freezes the ticket (TICKET_FULL_REFUND_ACTION=freeze)
    client = await solana(stack)
    frozen = await eventually(
        lambda: client.holder(parse_pubkey(done["mint"])),
        lambda h: h is not None and h[1].frozen,
        what="the frozen ticket",
    )
    await client.aclose()
    assert frozen is not None
    stranger = await stack.api.post(
        f"/api/v1/tickets/{purchase_id}/refund", json={}, headers=stack.auth("mallory", tenant)
    )
    assert stranger.status_code == 404


async def test_transfer_to_another_wallet(stack: Stack) -> None:
    tenant = unique_tenant()
    headers = stack.auth("fay", tenant)
    sent, accepted = await buy(stack, headers, await create_event(stack, tenant))
    purchase_id = accepted["id"]
    done = await until(
        stack, purchase_id, headers, lambda v: v["status"] == "completed", "completion"
    )
    target = wallet()
    response = await stack.api.post(
        f"/api/v1/tickets/{purchase_id}/transfer", json={"to_wallet": target}, headers=headers
    )
    assert response.status_code == 202, response.text
    moved = await until(
        stack, purchase_id, headers, lambda v: v["owner_wallet"] == target, "the transfer"
    )
    assert (
        moved["transfers"][0]["status"] == "transferred"
        and moved["transfers"][0]["from_wallet"] == sent["buyer_wallet"]
    )
    client = await solana(stack)
    holder = await client.holder(parse_pubkey(done["mint"]))
    await client.aclose()
    assert holder is not None and str(holder[1].owner) == target
    # the former holder cannot pull the ticket back with the delegate
    back = await stack.api.post(
        f"/api/v1/tickets/{purchase_id}/transfer",
        json={"to_wallet": sent["buyer_wallet"]},
        headers=headers,
    )
    assert back.status_code == 403
    # the venue can move it from its holder
    venue = stack.auth("box-office", tenant, ["venue_admin"])
    same = await stack.api.post(
        f"/api/v1/tickets/{purchase_id}/transfer", json={"to_wallet": target}, headers=venue
    )
    assert same.status_code == 422
    third = wallet()
    moved_by_venue = await stack.api.post(
        f"/api/v1/tickets/{purchase_id}/transfer", json={"to_wallet": third}, headers=venue
    )
    assert moved_by_venue.status_code == 202, moved_by_venue.text
    await until(stack, purchase_id, headers, lambda v: v["owner_wallet"] == third, "the move")


async def test_payment_needing_authentication_completes_after_the_webhook(stack: Stack) -> None:
    tenant = unique_tenant()
    headers = stack.auth("gus", tenant)
    _, accepted = await buy(
        stack,
        headers,
        await create_event(stack, tenant),
        payment_method="pm_card_authenticationRequired",
    )
    waiting = await until(
        stack,
        accepted["id"],
        headers,
        lambda v: v["status"] == "requires_action",
        "requires_action",
    )
    async with httpx.AsyncClient() as http:
        await http.post(
            f"{stack.stripe.url}/_sandbox/payment_intents/{waiting['payment_intent']}/authenticate",
            json={"succeed": True},
        )
    await until(
        stack,
        accepted["id"],
        headers,
        lambda v: v["status"] == "completed",
        "completion after authentication",
    )


def signed(
    stack: Stack, event: dict[str, Any], timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    payload = json.dumps(event)
    secret = stack.settings.stripe_webhook_secret.get_secret_value()
    return payload.encode(), {
        "Stripe-Signature": sign(payload, secret, timestamp),
        "Content-Type": "application/json",
    }


async def test_stripe_webhook_with_a_bad_signature_or_an_old_timestamp_is_400(stack: Stack) -> None:
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "payment_intent.succeeded",
        "data": {"object": {"id": "pi_x"}},
    }
    payload, headers = signed(stack, event)
    bad = await stack.api.post(
        "/webhooks/stripe",
        content=payload,
        headers={**headers, "Stripe-Signature": "t=1,v1=deadbeef"},
    )
    assert bad.status_code == 400
    old_payload, old_headers = signed(stack, event, timestamp=1_000_000_000)
    old = await stack.api.post("/webhooks/stripe", content=old_payload, headers=old_headers)
    assert old.status_code == 400
    missing = await stack.api.post(
        "/webhooks/stripe", content=payload, headers={"Content-Type": "application/json"}
    )
    assert missing.status_code == 400


async def test_duplicate_stripe_webhook_has_one_effect(stack: Stack) -> None:
    tenant = unique_tenant()
    headers = stack.auth("hal", tenant)
    _, accepted = await buy(
        stack,
        headers,
        await create_event(stack, tenant),
        payment_method="pm_card_authenticationRequired",
    )
    waiting = await until(
        stack,
        accepted["id"],
        headers,
        lambda v: v["status"] == "requires_action",
        "requires_action",
    )
    intent = stack.stripe_state.intents[waiting["payment_intent"]]
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "payment_intent.succeeded",
        "data": {"object": {**intent, "status": "succeeded"}},
    }
    payload, sig = signed(stack, event)
    first = await stack.api.post("/webhooks/stripe", content=payload, headers=sig)
    second = await stack.api.post("/webhooks/stripe", content=payload, headers=sig)
    assert first.json() == {"received": True, "duplicate": False}
    assert second.json() == {"received": True, "duplicate": True}


async def test_webhook_target_on_a_private_address_is_refused(stack: Stack) -> None:
    tenant = unique_tenant()
    venue = stack.auth("ivy", tenant, ["venue_admin"])
    for url in (
        "http://10.1.2.3/hook",
        "http://192.168.1.7/hook",
        "http://169.254.169.254/latest",
        "ftp://example.com/x",
        "https://no-such-host.invalid/hook",  # was a 502 (found by schemathesis)
    ):
        response = await stack.api.post(
            "/api/v1/webhook-endpoints", json={"url": url}, headers=venue
        )
        assert response.status_code == 422, url
        assert response.json()["error"]["field"] == "url", url
    async with stack.sessions() as session:
        assert (
            await session.execute(select(WebhookEndpoint).where(WebhookEndpoint.tenant == tenant))
        ).first() is None
    user = await stack.api.post(
        "/api/v1/webhook-endpoints",
        json={"url": "http://127.0.0.1:9/x"},
        headers=stack.auth("joe", tenant),
    )
    assert user.status_code == 403


async def test_an_endpoint_answering_410_is_disabled(stack: Stack, receiver: Receiver) -> None:
    tenant = unique_tenant()
    headers = stack.auth("kim", tenant)
    await register(stack, tenant, receiver.url)
    receiver.answer = 410
    _, accepted = await buy(stack, headers, await create_event(stack, tenant))
    await until(stack, accepted["id"], headers, lambda v: v["status"] == "completed", "completion")

    async def endpoint() -> WebhookEndpoint:
        async with stack.sessions() as session:
            return (
                await session.execute(
                    select(WebhookEndpoint).where(WebhookEndpoint.tenant == tenant)
                )
            ).scalar_one()

    disabled = await eventually(
        endpoint, lambda e: e.disabled_at is not None, what="the endpoint to be disabled"
    )
    assert "410" in (disabled.disabled_reason or "")


BAD = [
    pytest.param({"buyer_wallet": "not-base58!"}, "buyer_wallet", id="wallet"),
    # the price is the catalogue's: a body that sends one is refused, whatever the value
    pytest.param({"currency": "usd"}, "currency", id="currency-sent"),
    pytest.param({"amount": 2500}, "amount", id="amount-sent"),
    pytest.param({"amount": 50, "currency": "usd"}, "amount", id="cheap-amount-sent"),
    pytest.param({"amount": None}, "amount", id="amount-null-sent"),
    pytest.param({"buyer_email": "nobody"}, "buyer_email", id="email"),
    pytest.param({"payment_method": "card"}, "payment_method", id="payment-method"),
    pytest.param({"seat": ""}, "seat", id="seat"),
    pytest.param({"seat": "Z-99"}, "seat", id="seat-not-in-event"),
    pytest.param({"section": "BALCONY"}, "section", id="section-not-in-event"),
    pytest.param({"section": "SEATS"}, "seat", id="section-needs-a-seat"),
    pytest.param({"section": None}, "seat", id="no-place"),
    pytest.param({"event_id": "no-such-event"}, "event_id", id="unknown-event"),
]


@pytest.mark.parametrize(("override", "field_name"), BAD)
async def test_bad_purchase_input_is_refused_and_changes_nothing(
    stack: Stack, override: dict[str, Any], field_name: str
) -> None:
    tenant = unique_tenant()
    event = await create_event(stack, tenant)
    before = stack.stripe_state.requests
    response = await stack.api.post(
        "/api/v1/tickets/purchase",
        json=body(event["id"], **override),
        headers=stack.auth("lee", tenant),
    )
    assert response.status_code == (404 if field_name == "event_id" else 422), response.text
    assert response.json()["error"]["field"] == field_name
    assert stack.stripe_state.requests == before
    assert (await stack.temporal.count_workflows(f'SettleTenant = "{tenant}"')).count == 0
    async with stack.sessions() as session:
        assert (
            await session.execute(select(TicketPurchase).where(TicketPurchase.tenant == tenant))
        ).first() is None


async def _worker_lines(stack: Stack) -> dict[str, float]:
    """The worker's counters by series, the SDK's own labels dropped (and summed over)."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://{stack.settings.worker_metrics_bind}/metrics")).text
    lines: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            kept = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()) if k in _OWN)
            key = f"{s.name}{{{kept}}}" if kept else s.name
            lines[key] = lines.get(key, 0) + s.value
    return lines


_OWN = {"currency", "status", "type", "event", "reason"}


async def test_ticket_counters_are_counted_by_the_worker(stack: Stack) -> None:
    """The old service's ticket counters, counted by the worker as the purchase happens (not
    read from the database: tests/e2e/test_metrics_counters.py has every kind)."""
    before = await _worker_lines(stack)
    tenant = unique_tenant()
    headers = stack.auth("max", tenant)
    _, accepted = await buy(stack, headers, await create_event(stack, tenant, currency="eur"))
    await until(stack, accepted["id"], headers, lambda v: v["status"] == "completed", "completion")
    paid = 'payments_processed_total{currency="EUR",status="succeeded"}'
    lines = await eventually(
        lambda: _worker_lines(stack),
        lambda now: (
            now.get(paid, 0) - before.get(paid, 0) >= 1
            and now.get("nfts_minted_total", 0) - before.get("nfts_minted_total", 0) >= 1
        ),
        what="the purchase's counters",
    )
    amount = 'payment_amount_total_cents_total{currency="EUR"}'
    assert lines[amount] - before.get(amount, 0) == 2500
    sent = 'emails_sent_total{type="payment_confirmation"}'
    assert lines[sent] - before.get(sent, 0) >= 1
    text = (await stack.api.get("/metrics", headers=stack.platform_admin())).text
    balance = next(
        float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("solana_wallet_balance_sol ")
    )
    assert 0 < balance <= 100
