"""The Stripe stand-in retries a webhook delivery the endpoint refused, as Stripe does.

Uses the real ``stripe`` client against the sandbox; the receiving endpoint answers 503 once.
"""

from __future__ import annotations

import asyncio

import stripe
from fastapi import FastAPI, Request, Response

from sandbox.serve import serve
from sandbox.stripe import create_stripe_app

API_KEY = "sk_test_sandbox-webhook-retry"
SECRET = "whsec_sandbox-webhook-retry"


async def test_a_refused_delivery_is_retried_until_accepted() -> None:
    answers = [503]
    received: list[str] = []
    receiver = FastAPI()

    @receiver.post("/hook")
    async def hook(request: Request) -> Response:
        event = stripe.Webhook.construct_event(
            await request.body(), request.headers["Stripe-Signature"], SECRET
        )
        received.append(event["type"])
        return Response(status_code=answers.pop(0) if answers else 200)

    hook_server = await serve(receiver)
    sandbox = create_stripe_app(
        api_key=API_KEY, webhook_secret=SECRET, webhook_url=f"{hook_server.url}/hook"
    )
    stripe_server = await serve(sandbox)
    try:
        client = stripe.StripeClient(
            API_KEY,
            base_addresses={"api": stripe_server.url},
            http_client=stripe.HTTPXClient(),
            max_network_retries=0,
        )
        await client.v1.payment_intents.create_async(
            {"amount": 2500, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
        )
        for _ in range(100):  # the first retry comes 0.5 s after the refusal
            if sandbox.state.sandbox.delivered >= 1:
                break
            await asyncio.sleep(0.05)
        # refused once (503), then delivered: the refusal did not end the delivery loop
        assert received[:2] == ["payment_intent.succeeded", "payment_intent.succeeded"]
        assert sandbox.state.sandbox.delivered >= 1
    finally:
        await stripe_server.stop()
        await hook_server.stop()
