"""M-Pesa deposits through the HTTP API, the real dev server, the Daraja sandbox and a real
database."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from temporalio.client import Client

from domain.fx import kes_to_usdc_minor
from domain.mpesa import DepositStatus
from store.models import LedgerEntry, MpesaCallbackRecord, MpesaDeposit, User
from tests.fixtures.chain import new_wallet
from tests.fixtures.stack import Stack, eventually, unique_tenant
from workflows.mpesa_deposit import MpesaDeposit as MpesaDepositWorkflow

pytestmark = pytest.mark.usefixtures("balanced_ledger")

PHONE_OK = "254708374149"
PHONE_CANCELLED = "254700001032"
PHONE_NO_CALLBACK = "254700000000"
PHONE_DUPLICATES = "254700000002"


async def initiate(
    stack: Stack,
    headers: dict[str, str],
    phone: str = PHONE_OK,
    amount: Any = 150,
    wallet: str | None = None,
    **extra: Any,
):
    body = {"phone": phone, "amount": amount, "wallet_address": wallet or new_wallet()}
    return await stack.api.post("/api/v1/deposit/initiate", json=body, headers=headers, **extra)


def usdc_for(stack: Stack, kes: int) -> int:
    """What ``kes`` whole shillings buy at the configured rate, in USDC base units."""
    return kes_to_usdc_minor(kes * 100, Decimal(stack.settings.fx_kes_per_usdc))


async def portfolio(stack: Stack, headers: dict[str, str], currency: str = "USDC") -> int:
    response = await stack.api.get("/api/v1/portfolio", headers=headers)
    assert response.status_code == 200, response.text
    balances = {b["currency"]: b["balance_minor"] for b in response.json()["balances"]}
    return balances.get(currency, 0)


async def ledger_entries_for(stack: Stack, deposit_id: str) -> int:
    async with stack.sessions() as session:
        return (
            await session.execute(
                select(func.count())
                .select_from(LedgerEntry)
                .where(LedgerEntry.description.contains(deposit_id))
            )
        ).scalar_one()


async def workflows_for_tenant(client: Client, tenant: str) -> int:
    return (await client.count_workflows(f'SettleTenant = "{tenant}"')).count


async def test_initiate_callback_credits_once(stack: Stack) -> None:
    tenant = unique_tenant()
    headers = stack.auth("alice", tenant)
    wallet = new_wallet()
    response = await initiate(stack, headers, wallet=wallet)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "initiated"
    assert body["workflow_id"] == f"mpesa-deposit-{body['id']}"
    assert body["status_url"] == f"/api/v1/deposit/{body['id']}"

    row = await stack.wait_for_deposit(body["id"], {DepositStatus.CREDITED})
    assert row.mpesa_receipt and row.mpesa_receipt.startswith("S")
    assert row.result_code == 0
    assert row.checkout_request_id and row.checkout_request_id.startswith("ws_CO_")
    # the USDC is on chain in the user's wallet, and the portfolio says the same
    assert await stack.chain.usdc_balance(wallet) == usdc_for(stack, 150) == row.usdc_minor
    assert await portfolio(stack, headers) == usdc_for(stack, 150)
    assert await portfolio(stack, headers, "KES") == 0
    assert await ledger_entries_for(stack, body["id"]) == 1
    receipt = await stack.chain.client.receipt(row.usdc_tx_hash or "")
    assert receipt is not None and int(receipt["status"], 16) == 1

    result = await stack.deposit_handle(body["workflow_id"]).result()
    assert result.status == DepositStatus.CREDITED
    view = (await stack.api.get(body["status_url"], headers=headers)).json()
    assert view["status"] == "credited"
    assert view["step"] == "done"
    assert view["receipt"] == row.mpesa_receipt
    assert view["amount"] == "150.00"
    assert view["usdc_tx_hash"] == row.usdc_tx_hash and view["wallet_address"] == wallet
    assert view["usdc_amount"] == f"{usdc_for(stack, 150) / 10**6:.6f}"
    # the workflow is findable by its search attributes, as in the Web UI
    assert await workflows_for_tenant(stack.temporal, tenant) == 1


async def test_five_duplicate_callbacks_at_once_credit_once(stack: Stack) -> None:
    headers = stack.auth("bob", unique_tenant())
    body = (await initiate(stack, headers, phone=PHONE_NO_CALLBACK, amount=75)).json()
    row = await stack.wait_for_deposit(body["id"], {DepositStatus.AWAITING_PAYMENT})
    checkout = row.checkout_request_id
    assert checkout is not None
    payload = (await stack.api.get(f"{stack.daraja.url}/_sandbox/callback-body/{checkout}")).json()
    answers = await asyncio.gather(
        *(stack.api.post(stack.callback_path, json=payload) for _ in range(5))
    )
    assert [a.status_code for a in answers] == [200] * 5
    assert all(a.json() == {"ResultCode": 0, "ResultDesc": "Accepted"} for a in answers)
    await stack.wait_for_deposit(body["id"], {DepositStatus.CREDITED})
    assert await portfolio(stack, headers) == usdc_for(stack, 75)
    assert await ledger_entries_for(stack, body["id"]) == 1
    state = await stack.deposit_handle(body["workflow_id"]).result()
    # copies that raced the workflow's completion were answered but never reached its history
    assert state.duplicate_callbacks <= 4


async def test_sandbox_duplicate_callbacks_credit_once(stack: Stack) -> None:
    headers = stack.auth("dora", unique_tenant())
    body = (await initiate(stack, headers, phone=PHONE_DUPLICATES, amount=20)).json()
    await stack.wait_for_deposit(body["id"], {DepositStatus.CREDITED})
    await asyncio.sleep(0.5)  # let the remaining copies arrive
    assert await portfolio(stack, headers) == usdc_for(stack, 20)
    assert await ledger_entries_for(stack, body["id"]) == 1


async def test_cancelled_by_customer_fails_with_reason(stack: Stack) -> None:
    headers = stack.auth("carol", unique_tenant())
    body = (await initiate(stack, headers, phone=PHONE_CANCELLED)).json()
    row = await stack.wait_for_deposit(body["id"], {DepositStatus.FAILED})
    assert row.result_code == 1032
    assert "cancelled" in (row.failure_reason or "")
    assert await portfolio(stack, headers) == 0 and row.usdc_tx_hash is None
    view = (await stack.api.get(body["status_url"], headers=headers)).json()
    assert view["status"] == "failed"
    assert view["result_desc"] == "Request cancelled by user"


async def test_no_callback_at_all_is_settled_by_stk_query(stack: Stack) -> None:
    headers = stack.auth("erin", unique_tenant())
    body = (await initiate(stack, headers, phone=PHONE_NO_CALLBACK, amount=10)).json()
    row = await stack.wait_for_deposit(body["id"], {DepositStatus.CREDITED}, timeout=30)
    assert row.mpesa_receipt is None  # STK Push Query carries no receipt
    assert await portfolio(stack, headers) == usdc_for(stack, 10)
    state = await stack.deposit_handle(body["workflow_id"]).result()
    assert state.queries_made >= 1


async def test_idempotency_key_returns_the_same_deposit(stack: Stack) -> None:
    headers = {**stack.auth("frank", unique_tenant()), "Idempotency-Key": str(uuid.uuid4())}
    pushes_before = stack.daraja_state.stk_pushes
    wallet = new_wallet()
    first, second = await asyncio.gather(
        initiate(stack, headers, wallet=wallet), initiate(stack, headers, wallet=wallet)
    )
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    await stack.wait_for_deposit(first.json()["id"], {DepositStatus.CREDITED})
    assert stack.daraja_state.stk_pushes - pushes_before == 1
    assert await portfolio(stack, headers) == usdc_for(stack, 150)
    # after completion too: the same key never starts a second deposit
    third = await initiate(stack, headers, wallet=wallet)
    assert third.status_code == 202 and third.json()["id"] == first.json()["id"]
    other = await initiate(stack, headers, amount=151, wallet=wallet)
    assert other.status_code == 409
    assert other.json()["error"]["field"] == "Idempotency-Key"
    assert await portfolio(stack, headers) == usdc_for(stack, 150)
    assert await stack.chain.usdc_balance(wallet) == usdc_for(stack, 150)


BAD_BODIES = [
    pytest.param({"phone": "0712345678", "amount": 150}, "phone", id="local-phone-format"),
    pytest.param({"phone": "25471234567", "amount": 150}, "phone", id="short-phone"),
    pytest.param({"phone": 254712345678, "amount": 150}, "phone", id="phone-as-number"),
    pytest.param({"phone": "254712345678", "amount": 0}, "amount", id="amount-zero"),
    pytest.param({"phone": "254712345678", "amount": -5}, "amount", id="amount-negative"),
    pytest.param({"phone": "254712345678", "amount": 1.5}, "amount", id="amount-fractional"),
    pytest.param({"phone": "254712345678", "amount": 150.0}, "amount", id="amount-float"),
    pytest.param({"phone": "254712345678", "amount": "150"}, "amount", id="amount-string"),
    pytest.param({"phone": "254712345678", "amount": 10**12}, "amount", id="amount-huge"),
    pytest.param({"phone": "254712345678"}, "amount", id="missing-amount"),
    pytest.param({"amount": 150}, "phone", id="missing-phone"),
    pytest.param(
        {"phone": "254712345678", "amount": 150, "currency": "USD"}, "currency", id="unknown-field"
    ),
    pytest.param(
        {"phone": "254712345678", "amount": 150, "wallet_address": "0x1234"},
        "wallet_address",
        id="short-wallet",
    ),
    pytest.param(
        {
            "phone": "254712345678",
            "amount": 150,
            "wallet_address": "0x70997970c51812dc3A010C7d01b50e0d17dc79C8",
        },
        "wallet_address",
        id="bad-checksum-wallet",
    ),
    pytest.param({"phone": "254712345678", "amount": 150}, "wallet_address", id="no-wallet-at-all"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
async def test_bad_input_is_refused_and_changes_nothing(
    stack: Stack, body: dict[str, Any], field: str
) -> None:
    tenant = unique_tenant()
    pushes_before = stack.daraja_state.stk_pushes
    response = await stack.api.post(
        "/api/v1/deposit/initiate", json=body, headers=stack.auth("gail", tenant)
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert field in error["message"] and error["field"] == field
    await assert_nothing_happened(stack, tenant, pushes_before)


async def test_not_json_is_400_and_changes_nothing(stack: Stack) -> None:
    tenant = unique_tenant()
    pushes_before = stack.daraja_state.stk_pushes
    response = await stack.api.post(
        "/api/v1/deposit/initiate",
        content=b"phone=254712345678&amount=150",
        headers={**stack.auth("hank", tenant), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]["message"]
    await assert_nothing_happened(stack, tenant, pushes_before)


async def test_no_token_is_401(stack: Stack) -> None:
    response = await stack.api.post(
        "/api/v1/deposit/initiate", json={"phone": PHONE_OK, "amount": 150}
    )
    assert response.status_code == 401
    bad = await stack.api.get("/api/v1/portfolio", headers={"Authorization": "Bearer not-a-jwt"})
    assert bad.status_code == 401


async def assert_nothing_happened(stack: Stack, tenant: str, pushes_before: int) -> None:
    assert stack.daraja_state.stk_pushes == pushes_before
    assert await workflows_for_tenant(stack.temporal, tenant) == 0
    async with stack.sessions() as session:
        deposits = (
            await session.execute(
                select(func.count()).select_from(MpesaDeposit).where(MpesaDeposit.tenant == tenant)
            )
        ).scalar_one()
        users = (
            await session.execute(
                select(func.count()).select_from(User).where(User.tenant == tenant)
            )
        ).scalar_one()
    assert (deposits, users) == (0, 0)


async def callback_count(stack: Stack) -> int:
    async with stack.sessions() as session:
        return (
            await session.execute(select(func.count()).select_from(MpesaCallbackRecord))
        ).scalar_one()


async def test_wrong_callback_token_is_refused_and_changes_nothing(stack: Stack) -> None:
    before = await callback_count(stack)
    response = await stack.api.post(
        "/api/v1/deposit/mpesa-callback/not-the-token",
        json={
            "Body": {
                "stkCallback": {
                    "MerchantRequestID": "m",
                    "CheckoutRequestID": "ws_CO_x",
                    "ResultCode": 0,
                    "ResultDesc": "ok",
                }
            }
        },
    )
    assert response.status_code == 403
    assert await callback_count(stack) == before


MALFORMED_CALLBACKS = [
    pytest.param(b"not json", id="not-json"),
    pytest.param(b"[]", id="array"),
    pytest.param(b'{"Body": {}}', id="no-stkCallback"),
    pytest.param(
        b'{"Body": {"stkCallback": {"MerchantRequestID": "m", "CheckoutRequestID": "ws_CO_1", "ResultCode": "zero", "ResultDesc": "x"}}}',
        id="result-code-not-number",
    ),
    pytest.param(
        b'{"Body": {"stkCallback": {"MerchantRequestID": "m", "CheckoutRequestID": "ws_CO_1", "ResultCode": 0, "ResultDesc": "x"}}}',
        id="success-without-metadata",
    ),
    pytest.param(
        b'{"Body": {"stkCallback": {"MerchantRequestID": "m", "CheckoutRequestID": "ws_CO_1", "ResultCode": 0, "ResultDesc": "x", "CallbackMetadata": {"Item": [{"Name": "Amount", "Value": 1}]}}}}',
        id="success-without-receipt",
    ),
]


@pytest.mark.parametrize("raw", MALFORMED_CALLBACKS)
async def test_malformed_callback_is_400_and_changes_nothing(stack: Stack, raw: bytes) -> None:
    before = await callback_count(stack)
    response = await stack.api.post(
        stack.callback_path, content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "bad_request"
    assert await callback_count(stack) == before


async def test_another_users_deposit_is_404(stack: Stack) -> None:
    tenant = unique_tenant()
    owner = stack.auth("ivan", tenant)
    body = (await initiate(stack, owner, amount=5)).json()
    await stack.wait_for_deposit(body["id"], {DepositStatus.CREDITED})
    assert (await stack.api.get(body["status_url"], headers=owner)).status_code == 200
    stranger = await stack.api.get(body["status_url"], headers=stack.auth("judy", tenant))
    assert stranger.status_code == 404
    other_tenant_admin = await stack.api.get(
        body["status_url"], headers=stack.auth("root", unique_tenant(), ["admin"])
    )
    assert other_tenant_admin.status_code == 404
    same_tenant_admin = await stack.api.get(
        body["status_url"], headers=stack.auth("ops", tenant, ["admin"])
    )
    assert same_tenant_admin.status_code == 200
    missing = await stack.api.get(f"/api/v1/deposit/{uuid.uuid4()}", headers=owner)
    assert missing.status_code == 404


async def test_live_status_is_queried_from_the_running_workflow(stack: Stack) -> None:
    headers = stack.auth("kate", unique_tenant())
    body = (await initiate(stack, headers, phone=PHONE_NO_CALLBACK, amount=3)).json()
    await stack.wait_for_deposit(body["id"], {DepositStatus.AWAITING_PAYMENT})
    view = await eventually(
        lambda: stack.api.get(body["status_url"], headers=headers),
        lambda r: r.json().get("step") in ("await_callback", "stk_query"),
        what="a live step in the deposit view",
    )
    assert view.json()["status"] in ("awaiting_payment", "confirming")
    state = await stack.deposit_handle(body["workflow_id"]).query(MpesaDepositWorkflow.status)
    assert state.checkout_request_id == view.json()["checkout_request_id"]
    await stack.wait_for_deposit(body["id"], {DepositStatus.CREDITED}, timeout=30)


async def test_a_lost_push_answer_ends_the_deposit_without_a_second_prompt(stack: Stack) -> None:
    """A 503 from Daraja. A 5xx may come after Daraja prompted the customer, so the push is
    resolved first; when no callback comes within MPESA_PUSH_RESOLVE_SECONDS the deposit ends
    with a reason instead of prompting the phone again (issue 14: nobody is prompted twice). One
    push reached Daraja, nothing is credited, and the reason says why."""
    headers = stack.auth("lena", unique_tenant())
    stack.daraja_state.failures["stkpush"] = [1, 503]
    before = stack.daraja_state.arrivals.get("stkpush", 0)
    body = (await initiate(stack, headers, amount=7)).json()
    row = await stack.wait_for_deposit(body["id"], {DepositStatus.FAILED}, timeout=30)
    assert "not prompting again" in (row.failure_reason or "")
    assert stack.daraja_state.arrivals["stkpush"] - before == 1
    assert await portfolio(stack, headers) == 0


async def test_daraja_rejection_fails_the_deposit_without_retrying(stack: Stack) -> None:
    headers = stack.auth("mike", unique_tenant())
    stack.daraja_state.failures["stkpush"] = [1, 400]
    before = stack.daraja_state.arrivals.get("stkpush", 0)
    body = (await initiate(stack, headers, amount=7)).json()
    row = await stack.wait_for_deposit(body["id"], {DepositStatus.FAILED}, timeout=30)
    assert "DarajaRejected" in (row.failure_reason or "")
    assert stack.daraja_state.arrivals["stkpush"] - before == 1
    assert await portfolio(stack, headers) == 0
