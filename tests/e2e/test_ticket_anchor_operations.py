"""Ticket purchases and credential anchors without HTTP: :mod:`operations.ticket_purchases` and
:mod:`operations.credential_anchors` called with a ``Context`` built from the running API's
state, as their routes and ``POST /api/v1/jobs`` call them. What they return is what the routes
answer; a refusal is the error the route maps to its status."""

from __future__ import annotations

import pytest

from api.auth import Principal
from domain.errors import NotFound
from operations import credential_anchors, ticket_purchases
from operations.context import Context
from operations.credential_anchors_models import SingleAnchorBody
from operations.ticket_purchases import PurchaseBody
from tests.e2e.test_credentials import CID_V1, data_hash
from tests.e2e.test_tickets import body as purchase_body
from tests.fixtures.events import create_event
from tests.fixtures.stack import Stack, eventually, unique_tenant

pytestmark = pytest.mark.usefixtures("balanced_ledger")


def context(stack: Stack) -> Context:
    return Context.of_app_state(stack.app.state)


def user(tenant: str, subject: str) -> Principal:
    return Principal(subject=subject, tenant=tenant, roles=frozenset({"user"}))


async def test_a_purchase_started_and_read_without_http(stack: Stack) -> None:
    ctx, tenant = context(stack), unique_tenant()
    event = await create_event(stack, tenant)
    buyer = user(tenant, "ama")
    body = PurchaseBody.model_validate(purchase_body(event["id"]))
    accepted = await ticket_purchases.start_purchase(ctx, buyer, body, "ops-purchase-1")
    # the same key answers the same purchase, as the route does
    again = await ticket_purchases.start_purchase(ctx, buyer, body, "ops-purchase-1")
    assert again.id == accepted.id
    done = await eventually(
        lambda: ticket_purchases.get_purchase(ctx, buyer, accepted.id),
        lambda view: view.status == "completed",
        what="the purchase to complete",
    )
    response = await stack.api.get(
        f"/api/v1/tickets/purchase/{accepted.id}", headers=stack.auth("ama", tenant)
    )
    assert response.status_code == 200, response.text
    assert response.json() == done.model_dump(mode="json")
    with pytest.raises(NotFound):  # another tenant's caller
        await ticket_purchases.get_purchase(ctx, user(unique_tenant(), "ama"), done.id)


async def test_an_anchor_started_and_read_without_http(stack: Stack) -> None:
    ctx, tenant = context(stack), unique_tenant()
    issuer = user(tenant, "issuer")
    digest = data_hash()
    body = SingleAnchorBody(data_hash=digest, ipfs_cid=CID_V1, batch=False)
    started = await credential_anchors.start(ctx, issuer, "ops-cred-1", body)
    assert started.data_hash == digest
    done = await eventually(
        lambda: credential_anchors.get(ctx, issuer, "ops-cred-1"),
        lambda view: view.status == "confirmed",
        what="the anchor to be confirmed",
    )
    assert done.tx_hash and done.block
    response = await stack.api.get(
        "/api/v1/credentials/ops-cred-1/anchor", headers=stack.auth("issuer", tenant)
    )
    assert response.status_code == 200, response.text
    assert response.json() == done.model_dump(mode="json")
    with pytest.raises(NotFound):
        await credential_anchors.get(ctx, user(unique_tenant(), "issuer"), "ops-cred-1")
