"""The providers' records a reconciliation reads, through the real clients against the stand-ins:
Stripe's lists (``created[gte]``/``[lte]``, ``limit``, ``starting_after``, newest first) and the
Solana RPC's ``getSignaturesForAddress`` (paged with ``before``) + ``getTransaction``. Pages are
made small here so that paging itself is exercised.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import stripe
from solders.keypair import Keypair

from domain.nft import TicketMetadata
from providers import stripe as stripe_provider
from providers.solana import client as solana_provider
from providers.solana.client import SolanaTicketClient
from providers.stripe import StripePayments
from runtime.settings.solana import SANDBOX_AUTHORITY_KEYPAIR
from sandbox.serve import serve
from sandbox.solana_rpc import create_solana_app, fund
from sandbox.stripe import create_stripe_app

API_KEY = "sk_test_reconcile-lists"


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(stripe_provider, "LIST_PAGE", 2)
    monkeypatch.setattr(solana_provider, "SIGNATURE_PAGE", 2)
    yield


async def test_stripe_lists_page_through_a_creation_window(small_pages: None) -> None:
    sandbox = create_stripe_app(api_key=API_KEY, webhook_secret="whsec_x", webhook_url=None)
    server = await serve(sandbox)
    try:
        payments = StripePayments(API_KEY, api_base=server.url)
        made = [
            await payments.pay(
                amount_minor=1000 + i,
                currency="usd",
                payment_method="pm_card_visa",
                idempotency_key=f"pay-{uuid.uuid4()}",
                metadata={},
            )
            for i in range(5)
        ]
        refund = await payments.refund(
            payment_intent=made[0].id, amount_minor=300, idempotency_key="r-1", metadata={}
        )
        now = int(time.time())
        listed = await payments.list_payment_intents(now - 60, now + 60)
        assert sorted(p.id for p in listed) == sorted(p.id for p in made)
        assert {p.id: p.amount for p in listed} == {p.id: p.amount_received for p in made}
        (refunded,) = await payments.list_refunds(now - 60, now + 60)
        assert (refunded.id, refunded.amount, refunded.payment_intent) == (
            refund.id,
            300,
            made[0].id,
        )
        # a window before any of them: nothing
        assert await payments.list_payment_intents(now - 600, now - 300) == []

        # the wire format, as the real API: newest first, has_more, starting_after
        client = stripe.StripeClient(
            API_KEY, base_addresses={"api": server.url}, http_client=stripe.HTTPXClient()
        )
        first = await client.v1.payment_intents.list_async({"limit": 3})
        assert [p.id for p in first.data] == [p.id for p in reversed(made)][:3]
        assert first.has_more is True
        rest = await client.v1.payment_intents.list_async(
            {"limit": 3, "starting_after": first.data[-1].id}
        )
        assert [p.id for p in rest.data] == [made[1].id, made[0].id] and rest.has_more is False
        with pytest.raises(stripe.InvalidRequestError):
            await client.v1.payment_intents.list_async({"limit": 101})
    finally:
        await server.stop()


async def test_the_authority_mints_are_read_back_from_its_signatures(small_pages: None) -> None:
    authority = Keypair.from_base58_string(SANDBOX_AUTHORITY_KEYPAIR)
    app = create_solana_app()
    fund(app, authority.pubkey(), 10)
    server = await serve(app)
    solana = SolanaTicketClient(server.url, authority)
    try:
        mints, owners = [], []
        for _ in range(3):
            ticket = str(uuid.uuid4())
            owners.append(str(Keypair().pubkey()))
            mint, _, _ = await solana.mint_ticket(
                ticket,
                owners[-1],
                TicketMetadata(
                    name="T",
                    symbol="T",
                    uri="https://t.example/1",
                    event_id="e",
                    seat="s",
                    ticket_id=ticket,
                ),
            )
            mints.append(str(mint))
        # a transfer is a signature of the authority too, and mints nothing
        await solana.transfer_ticket(mints[0], owners[0], str(Keypair().pubkey()))
        now = int(time.time())
        seen = await solana.ticket_mints(now - 60, now + 60)
        assert sorted(m.mint for m in seen) == sorted(mints)
        assert all(m.block_time is not None and m.block_time <= now for m in seen)
        assert await solana.ticket_mints(now + 5, now + 60) == []
        assert await solana.ticket_mints(now - 600, now - 300) == []
    finally:
        await solana.aclose()
        await server.stop()
