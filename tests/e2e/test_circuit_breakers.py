"""Circuit breaker per provider, on the real dev server with the real sandboxes.

The Stripe sandbox goes down (every call answers 503) for about a minute while tickets are
bought. The breaker, counted by the workers in PostgreSQL, opens: the ``stripe`` activity task
queue is held on the server (``breaker:stripe``), an alert is open, ``/rate-limits/status/stripe``
and ``circuit_breaker_state{provider="stripe"}`` say so, and no other provider's queue is held.
The held payments wait in the server's backlog (no attempt is spent); when the sandbox answers
again a probe lets the queue go, the next call closes the breaker, and every purchase completes:
paid once, minted, with the alert cleared.

Its own API, workers and Stripe sandbox (own task-queue prefix) beside the session's stack, so
the outage and the breaker settings touch no other test.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import httpx
import pytest
from sqlalchemy import select

import worker as worker_module
from api.app import create_app
from domain.queues import all_queue_names
from runtime.breakers import ALERT_CONDITION
from sandbox.serve import bind_socket, serve
from sandbox.stripe import create_stripe_app
from store.models import Alert
from tests.e2e.test_tickets import buy, intents_for, view
from tests.fixtures.events import create_event
from tests.fixtures.stack import SANDBOX_SECRETS, Stack, eventually, unique_tenant
from tests.fixtures.temporal import new_prefix

pytestmark = pytest.mark.usefixtures("balanced_ledger")

#: long enough for plain retries to call Stripe 4 or 5 times per purchase (1, 2, 4, 8, 16 s
#: apart) where the held queue makes about one call each; 60 s proved no more and cost the suite
#: half a minute
OUTAGE_SECONDS = 30
PROBE_SECONDS = 2.0
BEFORE, DURING = 6, 3


@pytest.fixture
async def breaker_stack(stack: Stack) -> AsyncIterator[Stack]:
    """The stack's database, Temporal, Solana and SMTP; its own API, workers (with breakers and
    their probe loop) and Stripe sandbox."""
    api_socket = bind_socket("127.0.0.1", 0)
    api_url = f"http://127.0.0.1:{api_socket.getsockname()[1]}"
    stripe_app = create_stripe_app(
        api_key=SANDBOX_SECRETS["stripe_api_key"],
        webhook_secret=SANDBOX_SECRETS["stripe_webhook_secret"],
        webhook_url=f"{api_url}/webhooks/stripe",
    )
    stripe = await serve(stripe_app)
    settings = stack.settings.model_copy(
        update={
            "task_queue_prefix": new_prefix(),
            "api_public_url": api_url,
            "stripe_api_base": stripe.url,
            "breaker_enabled": True,
            "breaker_consecutive_failures": 3,
            "breaker_probe_interval_seconds": PROBE_SECONDS,
        }
    )
    client = stack.temporal
    resources = worker_module.build_resources(settings)
    breakers = worker_module.build_breakers(client, resources)
    assert breakers is not None
    workers = worker_module.build_workers(client, settings, resources, all_queue_names(), breakers)
    runs = [asyncio.create_task(w.run()) for w in workers]
    loop = asyncio.create_task(breakers.run(None, tick_seconds=0.5))
    api = await serve(
        create_app(settings, temporal=client, caches=resources.caches), sock=api_socket
    )
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        yield dataclasses.replace(
            stack,
            settings=settings,
            api=http,
            stripe=stripe,
            stripe_state=stripe_app.state.sandbox,
            workers=workers,
        )
    loop.cancel()
    await api.stop()
    await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
    await asyncio.gather(*runs, return_exceptions=True)
    await resources.aclose()
    await stripe.stop()


async def _status(s: Stack, key: str) -> dict[str, Any]:
    response = await s.api.get(f"/api/v1/rate-limits/status/{key}", headers=s.platform_admin())
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _gauge(s: Stack, provider: str) -> float | None:
    response = await s.api.get("/metrics", headers=s.platform_admin())
    assert response.status_code == 200, response.text
    found = re.search(
        rf'^circuit_breaker_state\{{provider="{provider}"\}} (\S+)$', response.text, re.M
    )
    return float(found.group(1)) if found else None


async def _alerts(s: Stack, status: str) -> list[Alert]:
    reference = f"{s.settings.task_queue_prefix}stripe"
    async with s.sessions() as session:
        rows = await session.execute(
            select(Alert).where(
                Alert.condition == ALERT_CONDITION, Alert.value == reference, Alert.status == status
            )
        )
        return list(rows.scalars())


async def _outage(s: Stack, down: bool) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{s.stripe.url}/_sandbox/outage", json={"down": down, "status": 503}
        )
        assert response.status_code == 200


async def test_stripe_outage_opens_the_breaker_holds_the_queue_and_every_purchase_completes(
    breaker_stack: Stack,
) -> None:
    s = breaker_stack
    tenant = unique_tenant()
    headers = s.auth("bea", tenant)
    event = await create_event(s, tenant)
    closed = await _status(s, "stripe")
    assert closed["breaker"]["state"] == "closed" and not closed["stopped"]
    assert await _gauge(s, "stripe") == 0

    await _outage(s, True)
    down_at = asyncio.get_running_loop().time()
    bought = [(await buy(s, headers, event))[1]["id"] for _ in range(BEFORE)]

    opened = await eventually(
        lambda: _status(s, "stripe"),
        lambda st: st["breaker"]["state"] == "open" and "breaker:stripe" in st["held_by"],
        timeout=30,
        what="the stripe breaker to open and hold its queue",
    )
    assert opened["stopped"] and opened["rate_per_second"] == 0
    assert opened["breaker"]["consecutive_failures"] >= 3
    assert "503" in (opened["breaker"]["last_error"] or "")
    assert len(await _alerts(s, "open")) == 1
    listed = await s.api.get("/api/v1/alerts?status=open", headers=s.platform_admin())
    reference = f"{s.settings.task_queue_prefix}stripe"
    assert any(a["condition"] == ALERT_CONDITION and a["value"] == reference for a in listed.json())
    assert await _gauge(s, "stripe") == 1
    # no other provider is held: their queues keep their own limits
    for key in ("solana", "smtp", "mpesa", "evm-write"):
        other = await _status(s, key)
        assert not other["stopped"] and other["held_by"] == [], other
        assert other["breaker"]["state"] == "closed"

    # bought while it is open: the payments wait in the backlog
    bought += [(await buy(s, headers, event))[1]["id"] for _ in range(DURING)]
    # while down, the probes keep failing and the queue stays held; calls barely reach Stripe
    await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (asyncio.get_running_loop().time() - down_at)))
    still = await _status(s, "stripe")
    assert still["breaker"]["state"] == "open" and still["stopped"]
    assert still["backlog"] is None or still["backlog"] >= 1
    for purchase_id in bought:
        assert (await view(s, purchase_id, headers))["status"] in ("paying", "pending")
    answered_down = dict(s.stripe_state.outage_answers)

    await _outage(s, False)
    await eventually(
        lambda: _status(s, "stripe"),
        lambda st: st["breaker"]["state"] == "closed" and not st["held_by"],
        timeout=30,
        what="the stripe breaker to close",
    )
    reopened = await _status(s, "stripe")
    assert reopened["rate_per_second"] == s.settings.rate_limit_stripe_per_second
    assert await _gauge(s, "stripe") == 0
    assert await _alerts(s, "open") == [] and len(await _alerts(s, "cleared")) == 1

    for purchase_id in bought:
        done = await eventually(
            partial(view, s, purchase_id, headers),
            lambda v: v["status"] in ("completed", "payment_failed", "refunded", "cancelled"),
            timeout=90,
            what=f"purchase {purchase_id} to finish",
        )
        assert done["status"] == "completed", done
        assert done["mint"] and done["amount_captured"] == 2500
        (intent,) = intents_for(s, purchase_id)
        assert intent["status"] == "succeeded"
    # while it was open the payments waited instead of calling the dead provider: about one
    # failed call per purchase bought before it opened (retried through the outage, each would
    # have made 4 or 5), none for those bought after; the probes asked the balance meanwhile
    payments = sum(n for path, n in answered_down.items() if path != "/v1/balance")
    assert payments <= 2 * BEFORE, answered_down
    assert answered_down.get("/v1/balance", 0) >= 5, answered_down
