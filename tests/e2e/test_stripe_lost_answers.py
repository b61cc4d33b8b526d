"""Stripe charged the card but its answers were lost on the way back (issue 14 §4: a purchase
ended payment_failed with the buyer charged and no ticket). The purchase asks again with its one
Idempotency-Key until Stripe answers: one PaymentIntent, one charge, the ticket minted."""

from __future__ import annotations

import pytest

from tests.e2e.test_tickets import buy, intents_for, until
from tests.fixtures.events import create_event
from tests.fixtures.stack import Stack, unique_tenant

pytestmark = pytest.mark.usefixtures("balanced_ledger")

INTENTS = "/v1/payment_intents"


async def test_a_charge_whose_answers_are_lost_is_resolved_not_failed(stack: Stack) -> None:
    tenant = unique_tenant()
    headers = stack.auth("lou", tenant)
    event = await create_event(stack, tenant)
    # the first create reaches Stripe and charges; it and the next two replays lose their answer
    stack.stripe_state.lose_answers[INTENTS] += 3
    _, accepted = await buy(stack, headers, event)
    done = await until(
        stack,
        accepted["id"],
        headers,
        lambda v: v["status"] in ("completed", "payment_failed", "needs_attention"),
        "the purchase to end",
        timeout=120,
    )
    assert stack.stripe_state.lose_answers[INTENTS] == 0  # every lost answer was asked again
    assert done["status"] == "completed", done
    (intent,) = intents_for(stack, accepted["id"])
    assert intent["status"] == "succeeded" and intent["amount_received"] == 2500
    assert done["payment_intent"] == intent["id"] and done["amount_captured"] == 2500
    assert done["mint"]
