"""The deposit operations without HTTP: :mod:`operations.mpesa_deposits`,
:mod:`operations.deposit_intents` and :mod:`operations.unmatched_payments` called directly with a
``Context`` built from the running API's state, as the routes and ``POST /api/v1/jobs`` call them.
The answers are the routes' answers; a refusal is the error the route maps to its status."""

from __future__ import annotations

import pytest

from api.auth import Principal
from domain.errors import InvalidInput, NotFound
from operations import deposit_intents, mpesa_deposits, unmatched_payments
from operations.context import Context
from operations.deposit_intents_models import CreateIntent
from operations.mpesa_deposits_models import InitiateDeposit
from tests.fixtures.chain import new_wallet
from tests.fixtures.stack import Stack, eventually, unique_tenant

pytestmark = pytest.mark.usefixtures("balanced_ledger")


def context(stack: Stack) -> Context:
    assert stack.app is not None
    return Context.of_app_state(stack.app.state)


def user(tenant: str, subject: str = "opal") -> Principal:
    return Principal(subject=subject, tenant=tenant, roles=frozenset({"user"}))


async def test_an_mpesa_deposit_started_and_read_without_http(stack: Stack) -> None:
    ctx, tenant = context(stack), unique_tenant()
    body = InitiateDeposit(phone="254708374149", amount=130, wallet_address=new_wallet())
    accepted = await mpesa_deposits.start(ctx, user(tenant), body, "ops-key-1")
    assert accepted.status == "initiated"
    assert accepted.workflow_id == f"mpesa-deposit-{accepted.id}"
    # the same key answers the same deposit, as the route does
    again = await mpesa_deposits.start(ctx, user(tenant), body, "ops-key-1")
    assert again.id == accepted.id
    done = await eventually(
        lambda: mpesa_deposits.get(ctx, user(tenant), accepted.id),
        lambda view: view.status == "credited",
        what="the deposit to be credited",
    )
    assert done.amount_minor == 13_000 and done.usdc_minor and done.receipt
    await stack.deposit_handle(accepted.workflow_id).result()
    done = await mpesa_deposits.get(ctx, user(tenant), accepted.id)
    # the route answers what the operation returns
    response = await stack.api.get(
        f"/api/v1/deposit/{accepted.id}", headers=stack.auth("opal", tenant)
    )
    assert response.status_code == 200, response.text
    assert response.json() == done.model_dump(mode="json")
    # another tenant's caller does not see it
    with pytest.raises(NotFound):
        await mpesa_deposits.get(ctx, user(unique_tenant()), accepted.id)


async def test_a_refused_amount_is_the_error_the_route_maps_to_422(stack: Stack) -> None:
    ctx, tenant = context(stack), unique_tenant()
    body = InitiateDeposit(phone="254708374149", amount=10**9, wallet_address=new_wallet())
    with pytest.raises(InvalidInput) as refused:
        await mpesa_deposits.start(ctx, user(tenant), body)
    assert refused.value.status_code == 422 and refused.value.field == "amount"
    response = await stack.api.post(
        "/api/v1/deposit/initiate",
        json=body.model_dump(mode="json"),
        headers=stack.auth("opal", tenant),
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == (refused.value.code, "amount")
    with pytest.raises(InvalidInput) as wrong_chain:
        await deposit_intents.start(ctx, user(tenant), CreateIntent(amount="1.5", chain="nope"))
    assert wrong_chain.value.field == "chain"


async def test_a_deposit_intent_created_and_read_without_http(stack: Stack) -> None:
    ctx, tenant = context(stack), unique_tenant()
    body = CreateIntent(amount="12.34", chain=stack.settings.evm_chain)
    view = await deposit_intents.start(ctx, user(tenant), body)
    assert view.status == "open" and view.amount_minor == 12_340_000
    assert view.address.startswith("0x") and view.status_url.endswith(view.id)
    read = await deposit_intents.get(ctx, user(tenant), view.id)
    assert (read.id, read.address, read.workflow_id) == (view.id, view.address, view.workflow_id)
    with pytest.raises(NotFound):
        await deposit_intents.get(ctx, user(tenant, "someone-else"), view.id)


async def test_unmatched_payments_listed_without_http(stack: Stack) -> None:
    ctx, tenant = context(stack), unique_tenant()
    admin = Principal(subject="ada", tenant=tenant, roles=frozenset({"admin"}))
    listed = await unmatched_payments.list_payments(ctx, admin)
    assert listed.count == len(listed.items) == 0  # a new tenant has none
    with pytest.raises(InvalidInput) as refused:
        await unmatched_payments.resolve(
            ctx, admin, "00000000-0000-4000-8000-000000000000",
            unmatched_payments.ResolveUnmatched(action="refunded"),
        )  # fmt: skip
    assert refused.value.field == "reference"
