"""Who may call what (issue 13 §2): every route of the OpenAPI schema x every role x the same or
another tenant, with the answer each must get.

The matrix is data: a route missing from ``MATRIX`` (or one that no longer exists) fails the
test, so a new route cannot ship without its entry. Tenant A owns one resource of each kind
(a credited deposit, an intent, an event, a purchase and its refund request, an anchor, a
verification job, a webhook endpoint, an alert); the same roles of tenant B then try every route on
them. Besides the status codes, no answer to a tenant-B caller (platform_admin apart, who reads
every tenant by design) may contain an id of tenant A's: 0 cross-tenant reads.

Probes are harmless: a caller the route admits gets a body that fails validation (422) or a
resource in a state that refuses the action (409); only tenant B's callers get valid bodies, so
that the route's own tenant check, not validation, answers them. Before the roles were split, a
tenant's admin got 200 from ``emergency-stop`` and saw other tenants' verification jobs: those rows
of the matrix failed.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from api.app import create_app
from store.models import Alert, MpesaUnmatchedPayment
from tests.e2e.test_tickets import body as purchase_body
from tests.e2e.test_tickets import until as purchase_until
from tests.e2e.test_verification_jobs import document, published, submit
from tests.fixtures.events import create_event
from tests.fixtures.stack import Stack, eventually, unique_tenant

ROLES = ("anonymous", "user", "venue_admin", "admin", "platform_admin")
#: anvil's account #3, a valid EVM address
WALLET = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
SOLANA_WALLET = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"
INVALID: dict[str, Any] = {"unexpected_field": True}
TX = "0x" + "ab" * 32


@dataclass(frozen=True)
class Probe:
    """One route's probe and the answers per role: (anonymous, user, venue_admin, admin,
    platform_admin). ``other`` is for tenant B's callers; None: the route has no tenant (the
    same answers)."""

    same: tuple[int, int, int, int, int]
    other: tuple[int, int, int, int, int] | None = None
    #: path parameters: a key of the tenant's resources (``World.ids``) or a literal
    params: dict[str, str] = field(default_factory=dict)
    body: Any = None
    #: the body tenant B's callers send (valid, so that the tenant check answers)
    other_body: Any = None
    #: path parameters for tenant B's callers, when not ``params``
    other_params: dict[str, str] | None = None
    query: dict[str, str] = field(default_factory=dict)
    multipart: bool = False


NO_AUTH = (200, 200, 200, 200, 200)
ANYONE = (401, 422, 422, 422, 422)  # any signed-in caller: the invalid body is refused
PLATFORM = (401, 403, 403, 403, 200)
PLATFORM_422 = (401, 403, 403, 403, 422)
PLATFORM_404 = (401, 403, 403, 403, 404)
HIDDEN = (401, 404, 404, 404, 404)  # another tenant's resource does not exist for you

MATRIX: dict[str, Probe] = {
    "GET /health/live": Probe(NO_AUTH),
    "GET /health/ready": Probe(NO_AUTH),
    "GET /health/startup": Probe(NO_AUTH),
    "GET /metrics": Probe(PLATFORM),
    "GET /metrics/json": Probe(PLATFORM),
    "GET /metrics/queue-stats": Probe((401, 403, 403, 200, 200), (401, 403, 403, 200, 200)),
    "GET /metrics/system": Probe(PLATFORM),
    "POST /api/v1/deposit/initiate": Probe(ANYONE, body=INVALID),
    "GET /api/v1/deposit/{deposit_id}": Probe(
        (401, 200, 404, 200, 404), HIDDEN, params={"deposit_id": "deposit"}
    ),
    # Daraja's callbacks carry no token of ours: the URL's secret decides (a wrong one: 403)
    "POST /api/v1/deposit/mpesa-callback/{token}": Probe(
        (403, 403, 403, 403, 403), params={"token": "not-the-token"}, body=INVALID
    ),
    "POST /api/v1/deposit/mpesa-status-result/{token}/{deposit_id}": Probe(
        (403, 403, 403, 403, 403),
        params={"token": "not-the-token", "deposit_id": "deposit"},
        body=INVALID,
    ),
    "POST /api/v1/deposit/mpesa-status-result/{token}/{deposit_id}/timeout": Probe(
        (403, 403, 403, 403, 403),
        params={"token": "not-the-token", "deposit_id": "deposit"},
        body=INVALID,
    ),
    # a tenant's unmatched M-Pesa payments: its admins (and the platform's operators) only;
    # tenant B's admin does not find tenant A's (404), nothing is credited or refunded
    "GET /api/v1/deposit/unmatched-payments": Probe(
        (401, 403, 403, 200, 200), (401, 403, 403, 200, 200)
    ),
    "POST /api/v1/deposit/unmatched-payments/{payment_id}/resolve": Probe(
        (401, 403, 403, 422, 422),
        (401, 403, 403, 404, 404),
        params={"payment_id": "unmatched"},
        body=INVALID,
        other_body={"action": "credit", "deposit_id": "00000000-0000-4000-8000-000000000000"},
    ),
    "POST /api/v1/deposit/intent/create": Probe(ANYONE, body=INVALID),
    "GET /api/v1/deposit/intent/{intent_id}": Probe(
        (401, 200, 404, 200, 404), HIDDEN, params={"intent_id": "intent"}
    ),
    "POST /api/v1/deposit/intent/{intent_id}/credit-late": Probe(
        (401, 403, 403, 422, 403),
        (401, 403, 403, 404, 403),
        params={"intent_id": "intent"},
        body=INVALID,
        other_body={"tx_hash": TX, "log_index": 0},
    ),
    "GET /api/v1/portfolio": Probe((401, 200, 200, 200, 200)),
    "GET /api/v1/wallets": Probe((401, 200, 200, 200, 200)),
    "PUT /api/v1/wallets/{chain}": Probe(ANYONE, params={"chain": "base"}, body=INVALID),
    "POST /api/v1/tickets/purchase": Probe(ANYONE, body=INVALID),
    "GET /api/v1/tickets/purchase/{purchase_id}": Probe(
        (401, 200, 200, 200, 404), HIDDEN, params={"purchase_id": "purchase"}
    ),
    "POST /api/v1/tickets/{purchase_id}/refund": Probe(
        (401, 422, 422, 422, 422),
        HIDDEN,
        params={"purchase_id": "purchase"},
        body=INVALID,
        other_body={},
    ),
    "POST /api/v1/tickets/{purchase_id}/refund-requests": Probe(
        (401, 422, 422, 422, 422),
        HIDDEN,
        params={"purchase_id": "purchase"},
        body=INVALID,
        other_body={},
    ),
    "GET /api/v1/tickets/refund-requests": Probe(
        (401, 200, 200, 200, 200), (401, 200, 200, 200, 200)
    ),
    "POST /api/v1/tickets/refund-requests/{request_id}/approve": Probe(
        (401, 422, 422, 422, 422),
        HIDDEN,
        params={"request_id": "refund_request"},
        body=INVALID,
        other_body={},
    ),
    "POST /api/v1/tickets/refund-requests/{request_id}/decline": Probe(
        (401, 422, 422, 422, 422),
        HIDDEN,
        params={"request_id": "refund_request"},
        body=INVALID,
        other_body={},
    ),
    "POST /api/v1/tickets/{purchase_id}/transfer": Probe(
        (401, 422, 422, 422, 422),
        HIDDEN,
        params={"purchase_id": "purchase"},
        body=INVALID,
        other_body={"to_wallet": SOLANA_WALLET},
    ),
    # Stripe's webhooks are signed, not authenticated: an unsigned body is a 400 for anyone
    "POST /webhooks/stripe": Probe((400, 400, 400, 400, 400), body=INVALID),
    "GET /api/v1/webhook-endpoints": Probe((401, 403, 200, 200, 200), (401, 403, 200, 200, 200)),
    "POST /api/v1/webhook-endpoints": Probe((401, 403, 422, 422, 422), body=INVALID),
    # the tenant's staff reach the lookup (a missing id: 404, nothing deleted); tenant B's
    # staff try tenant A's endpoint: 404, it stays
    "DELETE /api/v1/webhook-endpoints/{endpoint_id}": Probe(
        (401, 403, 404, 404, 404),
        (401, 403, 404, 404, 404),
        params={"endpoint_id": "00000000-0000-4000-8000-000000000000"},
        other_params={"endpoint_id": "endpoint"},
    ),
    # the tenant's staff read their endpoint's attempts; a platform_admin manages the alert
    # tenant's endpoints only, so tenant A's is not found for them, nor for tenant B's staff
    "GET /api/v1/webhook-endpoints/{endpoint_id}/deliveries": Probe(
        (401, 403, 200, 200, 404), (401, 403, 404, 404, 404), params={"endpoint_id": "endpoint"}
    ),
    # a delivery that does not exist: 404 to whoever reaches the lookup, nothing sent
    "POST /api/v1/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/redeliver": Probe(
        (401, 403, 404, 404, 404),
        (401, 403, 404, 404, 404),
        params={"endpoint_id": "endpoint", "delivery_id": "no-such-delivery"},
    ),
    "POST /api/v1/events": Probe((401, 403, 422, 422, 403), body=INVALID),
    "GET /api/v1/events": Probe((401, 200, 200, 200, 200), (401, 200, 200, 200, 200)),
    "GET /api/v1/events/{event_id}": Probe(
        (401, 200, 200, 200, 200), HIDDEN, params={"event_id": "event"}
    ),
    "PATCH /api/v1/events/{event_id}": Probe(
        (401, 403, 422, 422, 403),
        (401, 403, 404, 404, 403),
        params={"event_id": "event"},
        body=INVALID,
        other_body={"name": "taken over"},
    ),
    "GET /api/v1/events/{event_id}/availability": Probe(
        (401, 200, 200, 200, 200), HIDDEN, params={"event_id": "event"}
    ),
    "POST /api/v1/jobs": Probe(ANYONE, body=INVALID),
    "POST /api/v1/jobs/batch": Probe(ANYONE, body=INVALID),
    "GET /api/v1/jobs/{job_id}": Probe(
        (401, 200, 200, 200, 200), (401, 404, 404, 404, 200), params={"job_id": "job"}
    ),
    # every role lists what it may see (a user their own jobs, staff their tenant's); tenant B's
    # callers get their own tenant's jobs, never tenant A's (the leak check below)
    "GET /api/v1/jobs": Probe((401, 200, 200, 200, 200), (401, 200, 200, 200, 200)),
    "GET /api/v1/jobs/{job_id}/timeline": Probe(
        (401, 200, 200, 200, 200), (401, 404, 404, 404, 200), params={"job_id": "job"}
    ),
    # the deposit is credited: closed, nothing to cancel or retry (409 for who may act)
    "DELETE /api/v1/jobs/{job_id}": Probe(
        (401, 409, 403, 409, 403), (401, 404, 404, 404, 403), params={"job_id": "job"}
    ),
    "POST /api/v1/jobs/{job_id}/retry": Probe(
        (401, 409, 403, 409, 403), (401, 404, 404, 404, 403), params={"job_id": "job"}
    ),
    "POST /api/v1/jobs/{job_id}/terminate": Probe(
        (401, 403, 403, 409, 403),
        (401, 403, 403, 404, 403),
        params={"job_id": "job"},
        body={"reason": "matrix"},
        other_body={"reason": "matrix"},
    ),
    "POST /api/v1/jobs/{job_id}/abandon": Probe(
        (401, 403, 403, 409, 403),
        (401, 403, 403, 404, 403),
        params={"job_id": "job"},
        body={"reason": "matrix"},
        other_body={"reason": "matrix"},
    ),
    "GET /api/v1/dead-letter": Probe((401, 403, 403, 200, 200), (401, 403, 403, 200, 200)),
    "GET /api/v1/dead-letter/export": Probe((401, 403, 403, 200, 200), (401, 403, 403, 200, 200)),
    "GET /api/v1/dead-letter/stats/by-error": Probe(
        (401, 403, 403, 200, 200), (401, 403, 403, 200, 200)
    ),
    "POST /api/v1/dead-letter/retry": Probe((401, 403, 403, 422, 403), body=INVALID),
    "POST /api/v1/dead-letter/{job_id}/retry": Probe(
        (401, 403, 403, 409, 403), (401, 403, 403, 404, 403), params={"job_id": "job"}
    ),
    "GET /api/v1/alerts": Probe((401, 403, 403, 200, 200), (401, 403, 403, 200, 200)),
    "POST /api/v1/alerts/{alert_id}/acknowledge": Probe(
        (401, 403, 403, 200, 200), (401, 403, 403, 404, 200), params={"alert_id": "alert"}
    ),
    # runs the Monitor with a test alert: the platform's operator only
    "POST /api/v1/alerts/test": Probe((401, 403, 403, 403, 202)),
    # provider records are platform-wide: reconciliations are the platform's operator's only
    "POST /api/v1/reconciliations": Probe(PLATFORM_422, body=INVALID),
    "GET /api/v1/reconciliations": Probe(PLATFORM),
    "GET /api/v1/reconciliations/{reconciliation_id}": Probe(
        (401, 403, 403, 403, 404),
        params={"reconciliation_id": "00000000-0000-0000-0000-000000000000"},
    ),
    "POST /api/v1/reconciliations/mpesa-status-result/{token}/{reconciliation_id}": Probe(
        (403, 403, 403, 403, 403),
        params={"token": "not-the-token", "reconciliation_id": "reconciliation"},
        body=INVALID,
    ),
    "POST /api/v1/reconciliations/mpesa-status-result/{token}/{reconciliation_id}/timeout": Probe(
        (403, 403, 403, 403, 403),
        params={"token": "not-the-token", "reconciliation_id": "reconciliation"},
        body=INVALID,
    ),
    "POST /api/v1/credentials/{credential_id}/anchor": Probe(
        ANYONE, params={"credential_id": "credential"}, body=INVALID
    ),
    # a tenant's anchors are the tenant's (every role of it reads them; a platform_admin token
    # is a member of its own tenant too)
    "GET /api/v1/credentials/{credential_id}/anchor": Probe(
        (401, 200, 200, 200, 200), HIDDEN, params={"credential_id": "credential"}
    ),
    "POST /api/v1/credentials/anchor/batch": Probe(ANYONE, body=INVALID),
    # a confirmed anchor has nothing to retry (409); another tenant's is unknown (404)
    "POST /api/v1/credentials/{credential_id}/anchor/retry": Probe(
        (401, 409, 409, 409, 409), HIDDEN, params={"credential_id": "credential"}
    ),
    "GET /api/v1/cache/stats": Probe(PLATFORM),
    "DELETE /api/v1/cache/flush": Probe(PLATFORM),
    "GET /api/v1/schedules": Probe(PLATFORM),
    # an unknown schedule: the platform_admin's probe changes nothing (404)
    "POST /api/v1/schedules/{schedule_id}/pause": Probe(
        PLATFORM_404, params={"schedule_id": "no-such-schedule"}
    ),
    "POST /api/v1/schedules/{schedule_id}/resume": Probe(
        PLATFORM_404, params={"schedule_id": "no-such-schedule"}
    ),
    "POST /api/v1/schedules/{schedule_id}/trigger": Probe(
        PLATFORM_404, params={"schedule_id": "no-such-schedule"}
    ),
    "GET /api/v1/queues": Probe((401, 403, 200, 200, 200)),
    "GET /api/v1/queues/{name}/status": Probe(
        (401, 403, 200, 200, 200), (401, 403, 200, 200, 200), params={"name": "mpesa_deposit"}
    ),
    "GET /api/v1/queues/{name}/jobs": Probe(
        (401, 403, 200, 200, 200), (401, 403, 200, 200, 200), params={"name": "mpesa_deposit"}
    ),
    # an unknown queue: the platform's operator gets as far as the lookup (404), nothing pauses
    "POST /api/v1/queues/{name}/pause": Probe((401, 403, 403, 403, 404), params={"name": "nope"}),
    "POST /api/v1/queues/{name}/resume": Probe((401, 403, 403, 403, 404), params={"name": "nope"}),
    "POST /api/v1/queues/{name}/clear": Probe(
        (401, 403, 403, 422, 403), params={"name": "mpesa_deposit"}
    ),
    "GET /api/v1/rate-limits/status/{key}": Probe(PLATFORM, params={"key": "stripe"}),
    "POST /api/v1/rate-limits/reset/{key}": Probe(
        (401, 403, 403, 403, 404), params={"key": "paypal"}
    ),
    "POST /api/v1/rate-limits/emergency-stop": Probe(PLATFORM_422, body={}),
    "POST /api/v1/rate-limits/resume": Probe(PLATFORM_422, body={}),
    "POST /api/verification-jobs/verify": Probe(ANYONE, multipart=True),
    "POST /api/verification-jobs/proof": Probe(ANYONE, multipart=True),
    "GET /api/verification-jobs/stats": Probe((401, 200, 200, 200, 200), (401, 200, 200, 200, 200)),
    "GET /api/verification-jobs": Probe((401, 200, 200, 200, 200), (401, 200, 200, 200, 200)),
    "GET /api/verification-jobs/{job_id}": Probe(
        (401, 200, 404, 200, 200), (401, 404, 404, 404, 200), params={"job_id": "verification"}
    ),
    "POST /codec/decode": Probe((401, 403, 403, 422, 422), body=INVALID),
    "POST /codec/encode": Probe((401, 403, 403, 422, 422), body=INVALID),
    # the session route takes the token in its form (to set the cookie the Web UI sends): a
    # body without one is refused before anything (its roles: tests/e2e/test_payload_codec.py)
    "POST /codec/session": Probe((422, 422, 422, 422, 422), body=INVALID),
}


@dataclass
class World:
    """Tenant A's resources (by key) and the tokens of every role in tenants A and B."""

    tenant: str
    other: str
    ids: dict[str, str]
    headers: dict[tuple[str, str], dict[str, str]]


SUBJECTS = {"user": "ann", "venue_admin": "vera", "admin": "adam", "platform_admin": "pat"}


@pytest.fixture(scope="module")
async def world(stack: Stack) -> AsyncIterator[World]:
    tenant, other = unique_tenant(), unique_tenant()
    headers: dict[tuple[str, str], dict[str, str]] = {}
    for name, where in (("same", tenant), ("other", other)):
        headers[(name, "anonymous")] = {}
        for role, subject in SUBJECTS.items():
            headers[(name, role)] = stack.auth(subject, where, (role,))
    owner, venue = headers[("same", "user")], headers[("same", "venue_admin")]
    ids: dict[str, str] = {}

    deposit = await stack.api.post(
        "/api/v1/deposit/initiate",
        json={"phone": "254708374149", "amount": 150, "wallet_address": WALLET},
        headers=owner,
    )
    assert deposit.status_code == 202, deposit.text
    ids["deposit"], ids["job"] = deposit.json()["id"], deposit.json()["workflow_id"]

    intent = await stack.api.post(
        "/api/v1/deposit/intent/create", json={"amount": "2.50", "chain": "base"}, headers=owner
    )
    assert intent.status_code == 201, intent.text
    ids["intent"] = intent.json()["id"]

    event = await create_event(stack, tenant)
    ids["event"] = event["id"]
    bought = await stack.api.post(
        "/api/v1/tickets/purchase", json=purchase_body(event["id"]), headers=owner
    )
    assert bought.status_code == 202, bought.text
    ids["purchase"] = bought.json()["id"]

    ids["credential"] = f"matrix-{uuid.uuid4().hex[:8]}"
    anchored = await stack.api.post(
        f"/api/v1/credentials/{ids['credential']}/anchor",
        json={"data_hash": "0x" + uuid.uuid4().hex * 2, "ipfs_cid": CID},
        headers=owner,
    )
    assert anchored.status_code == 202, anchored.text
    # the three run at once (they used to be waited for one after the other)
    await asyncio.gather(
        stack.wait_for_deposit(ids["deposit"], {"credited"}, timeout=60),
        purchase_until(
            stack, ids["purchase"], owner, lambda v: v["status"] == "completed", "the purchase"
        ),
        eventually(
            lambda: stack.api.get(f"/api/v1/credentials/{ids['credential']}/anchor", headers=owner),
            lambda r: r.json()["status"] == "confirmed",
            timeout=60,
            what="the anchor",
        ),
    )
    asked = await stack.api.post(
        f"/api/v1/tickets/{ids['purchase']}/refund-requests", json={"amount": 1}, headers=owner
    )
    assert asked.status_code == 201, asked.text
    ids["refund_request"] = asked.json()["id"]

    data = document()
    content = await published(stack, data)
    job = await submit(stack, owner, data, content.manifest_uri)
    assert job.status_code in (200, 202), job.text
    ids["verification"] = job.json()["jobId"]

    endpoint = await stack.api.post(
        "/api/v1/webhook-endpoints", json={"url": "http://127.0.0.1:9/hooks"}, headers=venue
    )
    assert endpoint.status_code == 201, endpoint.text
    ids["endpoint"] = endpoint.json()["id"]

    async with stack.sessions.begin() as session:
        alert = Alert(
            condition="matrix_probe",
            severity="warning",
            message=f"an alert of tenant {tenant}",
            value="1",
            threshold="0",
            status="open",
            tenant=tenant,
        )
        session.add(alert)
        unmatched = MpesaUnmatchedPayment(
            checkout_request_id=f"ws_CO_matrix_{uuid.uuid4().hex[:12]}",
            receipt="SMATRIX001",
            phone="254708374149",
            amount_minor=15_000,
            tenant=tenant,
            status="open",
            reason="a matrix probe",
        )
        session.add(unmatched)
        await session.flush()
        ids["alert"], ids["unmatched"] = alert.id, unmatched.id
    yield World(tenant, other, ids, headers)


CID = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"


def operations(stack: Stack) -> set[str]:
    schema = create_app(stack.settings).openapi()
    return {f"{method.upper()} {path}" for path, ops in schema["paths"].items() for method in ops}


def test_every_route_has_an_entry_and_every_entry_a_route(stack: Stack) -> None:
    routes = operations(stack)
    assert sorted(routes - set(MATRIX)) == [], "routes without an entry in the matrix"
    assert sorted(set(MATRIX) - routes) == [], "entries for routes that no longer exist"


async def _call(
    stack: Stack, world: World, key: str, probe: Probe, who: str, role: str
) -> tuple[int, str, str]:
    method, template = key.split(" ", 1)
    path = template
    params = probe.other_params if who == "other" and probe.other_params else probe.params
    for name, value in params.items():
        path = path.replace("{" + name + "}", world.ids.get(value, value))
    body = probe.other_body if who == "other" and probe.other_body is not None else probe.body
    kwargs: dict[str, Any] = {"headers": world.headers[(who, role)], "params": probe.query}
    if probe.multipart:
        kwargs["files"] = {"file": ("x.txt", b"x", "text/plain")}  # no registry, no manifest
    elif body is not None:
        kwargs["json"] = body
    response = await stack.api.request(method, path, **kwargs)
    return response.status_code, response.text, path


async def test_who_may_call_what(stack: Stack, world: World) -> None:
    """Every route, every role, both tenants: the answer expected, and no cross-tenant read."""
    discover = os.environ.get("SETTLE_MATRIX_DISCOVER") == "1"
    wrong: list[str] = []
    leaks: list[str] = []
    secrets = set(world.ids.values())
    for key, probe in sorted(MATRIX.items()):
        for who in ("same", "other"):
            expected = probe.same if who == "same" or probe.other is None else probe.other
            got = []
            if key.startswith("GET "):  # reads change nothing: the five roles ask at once
                answers = await asyncio.gather(
                    *(_call(stack, world, key, probe, who, role) for role in ROLES)
                )
            else:  # writes in order: a role's answer may depend on what the one before did
                answers = [await _call(stack, world, key, probe, who, role) for role in ROLES]
            for role, want, (status, text, path) in zip(ROLES, expected, answers, strict=True):
                got.append(status)
                if status != want:
                    wrong.append(f"{key} [{who} {role}]: {status}, expected {want}: {text[:160]}")
                if who == "other" and role != "platform_admin":
                    # an id the caller sent may come back in a 404's message; any other may not
                    leaked = sorted(s for s in secrets if s in text and s not in path)
                    if leaked:
                        leaks.append(f"{key} [{role} of another tenant] sees {leaked}")
            if discover:
                print(f"{key} {who}: {tuple(got)}")
    assert wrong == [], "\n".join(wrong)
    assert leaks == [], "cross-tenant reads:\n" + "\n".join(leaks)
    # tenant A's endpoint survived tenant B's attempts
    listed = await stack.api.get(
        "/api/v1/webhook-endpoints", headers=world.headers[("same", "venue_admin")]
    )
    assert world.ids["endpoint"] in listed.text
