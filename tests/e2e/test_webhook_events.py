"""Completion is pushed, not polled (issue 15 §5): operations' events reach the tenant's
subscribed webhook endpoints, signed (Standard Webhooks) and retried, through the real API, dev
server, worker, Daraja sandbox and database, to a real local HTTP receiver that verifies them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook
from temporalio.service import RPCError, RPCStatusCode

from domain.events import event_workflow_id
from domain.mpesa import DepositStatus
from sandbox.serve import RunningServer, serve
from store.models import VerificationJob, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tests.e2e.test_credentials import CID_V1, data_hash, settled
from tests.e2e.test_credentials import url as credential_url
from tests.e2e.test_deposit_intents import create as create_intent
from tests.e2e.test_deposit_intents import short_intent, until_status
from tests.e2e.test_jobs_dead_letter import park_deposit, unblock
from tests.e2e.test_mpesa_deposit_api import PHONE_CANCELLED, initiate
from tests.e2e.test_tickets import buy, until
from tests.e2e.test_verification_jobs import BASE, document, published, submit, uploads_left
from tests.fixtures.events import create_event
from tests.fixtures.stack import Stack, eventually, unique_tenant

pytestmark = pytest.mark.usefixtures("balanced_ledger")

ENDPOINTS = "/api/v1/webhook-endpoints"


@dataclass
class Receiver:
    """A tenant's endpoint: keeps every request; answers ``script`` in order, then 200."""

    server: RunningServer
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    script: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.server.url}/hook"

    def events(self, secret: str) -> list[dict[str, Any]]:
        """Every request, each checked against ``secret`` (a bad signature raises)."""
        return [Webhook(secret).verify(body, headers) for headers, body in self.received]

    def ids(self) -> list[str]:
        return [headers["webhook-id"] for headers, _ in self.received]


@pytest.fixture
async def receivers() -> AsyncIterator[Any]:
    made: list[Receiver] = []

    async def make() -> Receiver:
        app = FastAPI()
        holder: list[Receiver] = []

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            receiver = holder[0]
            receiver.received.append((dict(request.headers), await request.body()))
            return Response(status_code=receiver.script.pop(0) if receiver.script else 200)

        holder.append(Receiver(await serve(app)))
        made.append(holder[0])
        return holder[0]

    yield make
    for receiver in made:
        await receiver.server.stop()


async def subscribe(stack: Stack, tenant: str, url: str, event_types: list[str]) -> tuple[str, str]:
    """A venue_admin's endpoint subscribed to ``event_types``: (id, signing secret)."""
    response = await stack.api.post(
        ENDPOINTS,
        json={"url": url, "event_types": event_types},
        headers=stack.auth("venue", tenant, ["venue_admin"]),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["event_types"] == sorted(event_types)
    return body["id"], body["secret"]


async def credited_deposit(stack: Stack, tenant: str, subject: str = "amara") -> str:
    response = await initiate(stack, stack.auth(subject, tenant))
    assert response.status_code == 202, response.text
    deposit_id = str(response.json()["id"])
    await stack.wait_for_deposit(deposit_id, {DepositStatus.CREDITED}, timeout=40)
    return deposit_id


async def delivered(stack: Stack, key: str) -> dict[str, Any]:
    """The result of the event's ``EventDelivery`` run (it has sent all it will send), once the
    operation has handed the event over."""
    handle = stack.handle(event_workflow_id(key))

    async def started() -> bool:
        try:
            await handle.describe()
        except RPCError as exc:
            if exc.status is RPCStatusCode.NOT_FOUND:
                return False
            raise
        return True

    await eventually(started, bool, timeout=30, what=f"the event {key}")
    result = await handle.result()
    return dict(result) if isinstance(result, dict) else result.model_dump()


async def count(receiver: Receiver) -> int:
    return len(receiver.received)


async def test_a_subscribed_endpoint_gets_one_signed_event_and_nothing_else(
    stack: Stack, receivers: Any
) -> None:
    tenant, other = unique_tenant(), unique_tenant()
    credits, failures, elsewhere = await receivers(), await receivers(), await receivers()
    credits_id, credits_secret = await subscribe(stack, tenant, credits.url, ["deposit.credited"])
    _, failures_secret = await subscribe(stack, tenant, failures.url, ["deposit.failed"])
    await subscribe(stack, other, elsewhere.url, ["deposit.credited", "deposit.failed"])

    deposit_id = await credited_deposit(stack, tenant)
    cancelled = (await initiate(stack, stack.auth("amara", tenant), phone=PHONE_CANCELLED)).json()
    await stack.wait_for_deposit(cancelled["id"], {DepositStatus.FAILED}, timeout=40)

    # both events have been handed to every endpoint they will ever reach
    assert (await delivered(stack, f"deposit.credited:{deposit_id}"))["delivered"] == 1
    assert (await delivered(stack, f"deposit.failed:{cancelled['id']}"))["delivered"] == 1

    (event,) = credits.events(credits_secret)
    assert event["type"] == "deposit.credited"
    assert event["data"]["deposit_id"] == deposit_id
    assert event["data"]["amount_minor"] == 15000 and event["data"]["currency"] == "KES"
    assert credits.ids() == [f"deposit.credited:{deposit_id}:{credits_id}"]
    (failed,) = failures.events(failures_secret)
    assert failed["type"] == "deposit.failed" and failed["data"]["deposit_id"] == cancelled["id"]
    assert failed["data"]["result_code"] == 1032
    # another tenant's endpoint, subscribed to both types, heard of neither
    assert elsewhere.received == []

    async with stack.sessions() as session:
        rows = (
            await session.execute(
                select(WebhookAttempt.response_code, WebhookDelivery.status)
                .join(WebhookDelivery, WebhookDelivery.id == WebhookAttempt.delivery_id)
                .where(WebhookAttempt.endpoint_id == credits_id)
            )
        ).all()
    assert rows == [(200, "delivered")]


async def test_a_failing_receiver_is_retried_listed_and_redelivered(
    stack: Stack, receivers: Any
) -> None:
    tenant = unique_tenant()
    staff = stack.auth("venue", tenant, ["venue_admin"])
    flaky = await receivers()
    flaky.script = [500, 503]
    endpoint_id, secret = await subscribe(stack, tenant, flaky.url, ["deposit.credited"])

    deposit_id = await credited_deposit(stack, tenant)
    # policies.WEBHOOK: again after 5 s, then after 15 s more
    await eventually(lambda: count(flaky), lambda n: n >= 3, timeout=60, what="three attempts")
    assert (await delivered(stack, f"deposit.credited:{deposit_id}"))["delivered"] == 1
    webhook_id = f"deposit.credited:{deposit_id}:{endpoint_id}"
    assert flaky.ids() == [webhook_id] * 3  # one id however often it is sent
    assert {e["data"]["deposit_id"] for e in flaky.events(secret)} == {deposit_id}

    listing = await stack.api.get(f"{ENDPOINTS}/{endpoint_id}/deliveries", headers=staff)
    assert listing.status_code == 200, listing.text
    attempts = listing.json()["attempts"]
    assert [a["response_code"] for a in attempts] == [200, 503, 500]  # newest first
    assert [a["status"] for a in attempts] == ["succeeded", "failed", "failed"]
    assert {a["delivery_status"] for a in attempts} == {"delivered"}
    assert {a["webhook_id"] for a in attempts} == {webhook_id}
    assert {a["event_type"] for a in attempts} == {"deposit.credited"}
    assert all(a["duration_ms"] >= 0 and a["trigger"] == "retry" for a in attempts)
    for attempt in attempts:
        started = datetime.fromisoformat(attempt["started_at"])
        assert started.utcoffset() == timedelta(0)  # carries its offset: UTC
        assert datetime.fromisoformat(attempt["finished_at"]) >= started
    assert "503" in attempts[1]["error"]

    # cursor pagination: two pages of the same three attempts
    first = (
        await stack.api.get(
            f"{ENDPOINTS}/{endpoint_id}/deliveries", params={"limit": 2}, headers=staff
        )
    ).json()
    assert [a["attempt"] for a in first["attempts"]] == [a["attempt"] for a in attempts[:2]]
    second = (
        await stack.api.get(
            f"{ENDPOINTS}/{endpoint_id}/deliveries",
            params={"limit": 2, "cursor": first["next_cursor"]},
            headers=staff,
        )
    ).json()
    assert [a["attempt"] for a in second["attempts"]] == [attempts[2]["attempt"]]
    assert second["next_cursor"] is None
    forged = await stack.api.get(
        f"{ENDPOINTS}/{endpoint_id}/deliveries", params={"cursor": "AAAA"}, headers=staff
    )
    assert forged.status_code == 422 and forged.json()["error"]["field"] == "cursor"

    # another tenant's staff: the endpoint and its deliveries do not exist for them
    stranger = stack.auth("venue", unique_tenant(), ["venue_admin"])
    hidden = await stack.api.get(f"{ENDPOINTS}/{endpoint_id}/deliveries", headers=stranger)
    assert hidden.status_code == 404
    refused = await stack.api.post(
        f"{ENDPOINTS}/{endpoint_id}/deliveries/{webhook_id}/redeliver", headers=stranger
    )
    assert refused.status_code == 404
    assert await count(flaky) == 3

    again = await stack.api.post(
        f"{ENDPOINTS}/{endpoint_id}/deliveries/{webhook_id}/redeliver", headers=staff
    )
    assert again.status_code == 202, again.text
    assert again.json()["delivery_id"] == webhook_id
    await eventually(lambda: count(flaky), lambda n: n == 4, what="the redelivery")
    assert flaky.ids() == [webhook_id] * 4
    assert flaky.events(secret)[-1]["data"]["deposit_id"] == deposit_id  # signed again
    newest = await eventually(
        lambda: stack.api.get(f"{ENDPOINTS}/{endpoint_id}/deliveries", headers=staff),
        lambda r: len(r.json()["attempts"]) == 4,
        what="the redelivery's attempt in the listing",
    )
    latest = newest.json()["attempts"][0]
    assert latest["trigger"] == "redeliver" and latest["response_code"] == 200
    assert latest["webhook_id"] == webhook_id


async def test_a_parked_job_is_pushed_as_job_parked(stack: Stack, receivers: Any) -> None:
    tenant = unique_tenant()
    parked_hooks = await receivers()
    _, secret = await subscribe(stack, tenant, parked_hooks.url, ["job.parked"])

    parked = await park_deposit(stack, tenant, "amara")
    await eventually(lambda: count(parked_hooks), lambda n: n >= 1, what="job.parked")
    (event,) = parked_hooks.events(secret)
    assert event["type"] == "job.parked"
    assert event["data"]["workflow_id"] == parked.workflow_id
    assert event["data"]["workflow_type"] == "MpesaDeposit"
    assert "IdempotencyConflict" in str(event["data"]["reason"])

    await unblock(stack, parked)
    await stack.handle(parked.workflow_id).signal("retry")
    await stack.wait_for_deposit(parked.deposit_id, {DepositStatus.CREDITED}, timeout=40)
    await delivered(stack, f"deposit.credited:{parked.deposit_id}")
    assert await count(parked_hooks) == 1  # not subscribed to deposit.credited


async def test_a_verification_callback_url_gets_verification_completed(
    stack: Stack, receivers: Any
) -> None:
    tenant = unique_tenant()
    user = stack.auth("ada", tenant)
    callback, bystander = await receivers(), await receivers()
    await subscribe(stack, tenant, bystander.url, ["deposit.credited"])
    data = document()
    manifest = await published(stack, data)

    response = await stack.api.post(
        f"{BASE}/verify",
        files={"file": ("diploma.pdf", data, "application/pdf")},
        data={
            "registryAddress": stack.settings.content_registry_address,
            "manifestURI": manifest.manifest_uri,
            "callback_url": callback.url,
        },
        headers=user,
    )
    assert response.status_code == 202, response.text
    job_id, hook = response.json()["jobId"], response.json()["callback"]
    await eventually(lambda: count(callback), lambda n: n >= 1, timeout=30, what="callback")
    (event,) = callback.events(hook["secret"])
    assert event["type"] == "verification.completed"
    assert event["data"]["job_id"] == job_id and event["data"]["status"] == "completed"
    assert callback.ids() == [f"verification.completed:{job_id}:{hook['endpoint_id']}"]
    await delivered(stack, f"verification.completed:{job_id}")
    assert bystander.received == []

    # the callback is not one of the tenant's endpoints: not listed, gets no other event
    admin = stack.auth("venue", tenant, ["venue_admin"])
    listed = (await stack.api.get(ENDPOINTS, headers=admin)).json()
    assert hook["endpoint_id"] not in json.dumps(listed)
    deliveries = await stack.api.get(f"{ENDPOINTS}/{hook['endpoint_id']}/deliveries", headers=admin)
    assert [a["response_code"] for a in deliveries.json()["attempts"]] == [200]


async def test_a_refused_callback_url_is_422_and_keeps_nothing(stack: Stack) -> None:
    tenant = unique_tenant()
    user = stack.auth("ada", tenant)
    before = len(uploads_left(stack))
    response = await stack.api.post(
        f"{BASE}/verify",
        files={"file": ("diploma.pdf", document(), "application/pdf")},
        data={
            "manifestURI": "ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
            "callback_url": "http://10.1.2.3/hook",
        },
        headers=user,
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "callback_url"
    assert len(uploads_left(stack)) == before
    anchor = await stack.api.post(
        "/api/v1/credentials/diploma-1/anchor",
        json={
            "data_hash": "0x" + "ab" * 32,
            "ipfs_cid": "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
            "callback_url": "http://169.254.169.254/latest/meta-data",
        },
        headers=user,
    )
    assert anchor.status_code == 422, anchor.text
    assert anchor.json()["error"]["field"] == "callback_url"
    async with stack.sessions() as session:
        jobs = (
            await session.execute(select(VerificationJob).where(VerificationJob.tenant == tenant))
        ).all()
        endpoints = (
            await session.execute(select(WebhookEndpoint).where(WebhookEndpoint.tenant == tenant))
        ).all()
    assert jobs == [] and endpoints == []
    assert (
        await stack.api.get("/api/v1/credentials/diploma-1/anchor", headers=user)
    ).status_code == 404


async def test_an_unknown_event_type_is_422_naming_event_types(stack: Stack) -> None:
    tenant = unique_tenant()
    staff = stack.auth("venue", tenant, ["venue_admin"])
    for types in (["deposit.credited", "deposit.exploded"], []):
        response = await stack.api.post(
            ENDPOINTS, json={"url": "http://127.0.0.1:9/hook", "event_types": types}, headers=staff
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == "event_types"
        if types:
            assert "deposit.exploded" in response.json()["error"]["message"]
    assert (await stack.api.get(ENDPOINTS, headers=staff)).json() == []


async def test_submit_helper_still_works_without_a_callback(stack: Stack) -> None:
    """Jobs without callback_url answer as before (no callback in the answer)."""
    user = stack.auth("ada", unique_tenant())
    data = document()
    manifest = await published(stack, data)
    response = await submit(stack, user, data, manifest.manifest_uri)
    assert response.status_code == 202, response.text
    assert response.json()["callback"] is None


async def test_a_credential_callback_url_gets_credential_confirmed(
    stack: Stack, receivers: Any
) -> None:
    tenant = unique_tenant()
    issuer = stack.auth("issuer", tenant)
    callback, subscriber = await receivers(), await receivers()
    _, subscriber_secret = await subscribe(stack, tenant, subscriber.url, ["credential.confirmed"])
    response = await stack.api.post(
        credential_url("diploma-7"),
        json={"data_hash": data_hash(), "ipfs_cid": CID_V1, "callback_url": callback.url},
        headers=issuer,
    )
    assert response.status_code == 202, response.text
    assert response.json()["mode"] == "single"  # a callback is for a single anchor
    hook = response.json()["callback"]
    done = await settled(stack, "diploma-7", issuer)
    assert done["status"] == "confirmed"
    await eventually(lambda: count(callback), lambda n: n >= 1, timeout=30, what="callback")
    await eventually(lambda: count(subscriber), lambda n: n >= 1, timeout=30, what="endpoint")
    (event,) = callback.events(hook["secret"])
    assert event["type"] == "credential.confirmed"
    assert event["data"]["credential_id"] == "diploma-7"
    assert event["data"]["tx_hash"] == done["tx_hash"]
    (same,) = subscriber.events(subscriber_secret)  # the tenant's endpoint, its own signature
    assert same["data"] == event["data"]
    # a second request for the same credential answers the anchor, with no new callback
    again = await stack.api.post(
        credential_url("diploma-7"),
        json={"data_hash": done["data_hash"], "ipfs_cid": CID_V1, "callback_url": callback.url},
        headers=issuer,
    )
    assert again.status_code == 202 and again.json()["callback"] is None
    batched = await stack.api.post(
        credential_url("diploma-8"),
        json={
            "data_hash": data_hash(),
            "ipfs_cid": CID_V1,
            "batch": True,
            "callback_url": callback.url,
        },
        headers=issuer,
    )
    assert batched.status_code == 422 and batched.json()["error"]["field"] == "callback_url"


async def test_batched_credentials_push_credential_confirmed_each_to_its_tenant(
    stack: Stack, receivers: Any
) -> None:
    """Batched anchors emitted nothing: a tenant subscribed to credential.confirmed heard of
    single anchors only. Now each credential of a batch is an event of its own tenant's."""
    tenant, other_tenant = unique_tenant(), unique_tenant()
    mine, theirs = await receivers(), await receivers()
    _, secret = await subscribe(stack, tenant, mine.url, ["credential.confirmed"])
    _, other_secret = await subscribe(stack, other_tenant, theirs.url, ["credential.confirmed"])
    issuer, other_issuer = stack.auth("issuer", tenant), stack.auth("issuer", other_tenant)
    for headers, credential_id in (
        (issuer, "batch-a"),
        (issuer, "batch-b"),
        (other_issuer, "batch-c"),
    ):
        response = await stack.api.post(
            credential_url(credential_id),
            json={"data_hash": data_hash(), "ipfs_cid": CID_V1, "batch": True},
            headers=headers,
        )
        assert response.status_code == 202 and response.json()["mode"] == "batch", response.text
    done = {cid: await settled(stack, cid, issuer) for cid in ("batch-a", "batch-b")}
    assert {d["status"] for d in done.values()} == {"confirmed"}
    await eventually(lambda: count(mine), lambda n: n >= 2, timeout=30, what="two events")
    await eventually(lambda: count(theirs), lambda n: n >= 1, timeout=30, what="one event")
    events = {e["data"]["credential_id"]: e for e in mine.events(secret)}
    assert set(events) == {"batch-a", "batch-b"}  # never the other tenant's credential
    for credential_id, event in events.items():
        assert event["type"] == "credential.confirmed"
        assert event["data"]["tx_hash"] == done[credential_id]["tx_hash"]
        assert event["data"]["batch_root"] == done[credential_id]["batch_root"]
    assert [e["data"]["credential_id"] for e in theirs.events(other_secret)] == ["batch-c"]


async def test_a_ticket_purchase_pushes_paid_minted_and_refunded(
    stack: Stack, receivers: Any
) -> None:
    tenant = unique_tenant()
    hooks, legacy = await receivers(), await receivers()
    _, secret = await subscribe(
        stack, tenant, hooks.url, ["ticket.paid", "ticket.minted", "ticket.refunded"]
    )
    made = await stack.api.post(  # no list: the webhooks of before subscriptions, as before
        ENDPOINTS, json={"url": legacy.url}, headers=stack.auth("venue", tenant, ["venue_admin"])
    )
    assert made.status_code == 201 and made.json()["event_types"] is None
    event = await create_event(stack, tenant)
    buyer = stack.auth("ann", tenant)
    _, accepted = await buy(stack, buyer, event)
    done = await until(
        stack, accepted["id"], buyer, lambda v: v["status"] == "completed", "the purchase"
    )
    await delivered(stack, f"ticket.minted:{accepted['id']}")
    await delivered(stack, f"ticket.paid:{accepted['id']}")
    refund = await stack.api.post(
        f"/api/v1/tickets/{accepted['id']}/refund",
        json={"amount": 500, "reason": "row closed"},
        headers=stack.auth("box", tenant, ["venue_admin"]),
    )
    assert refund.status_code == 202, refund.text
    refund_id = refund.json()["id"]
    await delivered(stack, f"ticket.refunded:{refund_id}")
    received = {e["type"]: e["data"] for e in hooks.events(secret)}
    # once each, by EventDelivery; not ticket.purchased, which it did not ask for
    assert sorted(received) == ["ticket.minted", "ticket.paid", "ticket.refunded"]
    assert len(hooks.received) == 3
    assert received["ticket.paid"]["purchase_id"] == accepted["id"]
    assert received["ticket.minted"]["mint"] == done["mint"]
    assert received["ticket.refunded"]["amount_minor"] == 500
    assert received["ticket.refunded"]["reason"] == "row closed"
    # the endpoint without a list got what endpoints always got, and nothing new
    await eventually(lambda: count(legacy), lambda n: n >= 2, what="the legacy webhooks")
    assert sorted(json.loads(body)["type"] for _, body in legacy.received) == [
        "ticket.purchased",
        "ticket.refunded",
    ]


async def test_an_intent_pushes_its_credit_and_its_end(stack: Stack, receivers: Any) -> None:
    tenant = unique_tenant()
    owner = stack.auth("olga", tenant)
    hooks = await receivers()
    _, secret = await subscribe(
        stack, tenant, hooks.url, ["deposit.credited", "intent.paid", "intent.expired"]
    )
    created = await create_intent(stack, owner, "25.50")
    assert created.status_code == 201, created.text
    intent = created.json()
    receipt = await stack.chain.pay(intent["address"], 25_500_000)
    await until_status(stack, intent["id"], owner, {"paid"})
    await delivered(stack, f"intent.paid:{intent['id']}")
    expiring = await short_intent(stack, "olga", tenant, 1_000_000, ttl_seconds=3)
    await until_status(stack, expiring, owner, {"expired"}, timeout=30)
    await delivered(stack, f"intent.expired:{expiring}")

    events = {(e["type"], e["data"]["intent_id"]): e["data"] for e in hooks.events(secret)}
    assert sorted(events) == sorted(
        [
            ("deposit.credited", intent["id"]),
            ("intent.paid", intent["id"]),
            ("intent.expired", expiring),
        ]
    )
    credited = events[("deposit.credited", intent["id"])]
    assert credited["credited_minor"] == 25_500_000 and credited["currency"] == "USDC"
    assert str(credited["transfer"]).startswith(receipt["transactionHash"])
    assert events[("intent.paid", intent["id"])]["received_minor"] == 25_500_000
    assert events[("intent.expired", expiring)]["received_minor"] == 0
