"""A callback is a claim (issue 12, sections 1 and 7): the real dev server, the Daraja sandbox
(its Transaction Status result goes to the API's ResultURL), anvil and a real database.

Each forged or contradicted success ends with nothing sent from the treasury, nothing credited,
the deposit parked with the reason and an alert open.
"""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from domain.mpesa import DepositStatus
from tests.e2e.test_mpesa_deposit_api import initiate, ledger_entries_for, portfolio, usdc_for
from tests.fixtures.chain import new_wallet
from tests.fixtures.stack import Stack, unique_tenant

pytestmark = pytest.mark.usefixtures("balanced_ledger")

PHONE_NO_CALLBACK = "254700000000"  # success, no callback: STK Push Query says paid
PHONE_CANCELLED_SILENT = "254700000003"  # cancelled, no callback: STK Push Query says 1032
PHONE_ANSWER_LOST = "254700000503"  # push accepted, HTTP answer 503


async def treasury_nonce(stack: Stack) -> int:
    return int(
        await stack.chain.rpc("eth_getTransactionCount", stack.chain.treasury, "pending"), 16
    )


async def open_alerts(
    stack: Stack, condition: str, tenant: str | None = None
) -> list[dict[str, Any]]:
    """The open alerts an admin of ``tenant`` sees (the platform's operator without one)."""
    admin = stack.auth("ops", tenant, roles=("user", "admin")) if tenant else stack.platform_admin()
    response = await stack.api.get("/api/v1/alerts?status=open&limit=500", headers=admin)
    assert response.status_code == 200, response.text
    return [a for a in response.json() if a["condition"] == condition]


async def sandbox_body(stack: Stack, checkout: str) -> dict[str, Any]:
    response = await stack.api.get(f"{stack.daraja.url}/_sandbox/callback-body/{checkout}")
    return dict(response.json())


def set_item(body: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    forged = copy.deepcopy(body)
    for item in forged["Body"]["stkCallback"]["CallbackMetadata"]["Item"]:
        if item["Name"] == name:
            item["Value"] = value
    return forged


def success_body(merchant: str, checkout: str, amount: float, phone: str) -> dict[str, Any]:
    return {
        "Body": {
            "stkCallback": {
                "MerchantRequestID": merchant,
                "CheckoutRequestID": checkout,
                "ResultCode": 0,
                "ResultDesc": "The service request is processed successfully.",
                "CallbackMetadata": {
                    "Item": [
                        {"Name": "Amount", "Value": amount},
                        {"Name": "MpesaReceiptNumber", "Value": "SFORGED0001"},
                        {"Name": "TransactionDate", "Value": 20261201020000},
                        {"Name": "PhoneNumber", "Value": int(phone)},
                    ]
                },
            }
        }
    }


async def assert_nothing_moved(
    stack: Stack, headers: dict[str, str], deposit_id: str, wallet: str, nonce: int
) -> None:
    assert await stack.chain.usdc_balance(wallet) == 0
    assert await treasury_nonce(stack) == nonce
    assert await ledger_entries_for(stack, deposit_id) == 0
    assert await portfolio(stack, headers) == 0


@pytest.mark.parametrize(
    ("item", "value", "field"),
    [("Amount", 1.0, "Amount is 1.00 KES"), ("PhoneNumber", 254711111111, "PhoneNumber")],
    ids=["wrong-amount", "wrong-phone"],
)
async def test_forged_success_callback_parks_and_moves_nothing(
    stack: Stack, item: str, value: Any, field: str
) -> None:
    tenant = unique_tenant()
    headers = stack.auth("mallory", tenant)
    wallet = new_wallet()
    nonce = await treasury_nonce(stack)
    body = (
        await initiate(stack, headers, phone=PHONE_NO_CALLBACK, amount=150, wallet=wallet)
    ).json()
    row = await stack.wait_for_deposit(body["id"], {DepositStatus.AWAITING_PAYMENT})
    assert row.checkout_request_id
    genuine = await sandbox_body(stack, row.checkout_request_id)
    answer = await stack.api.post(stack.callback_path, json=set_item(genuine, item, value))
    assert answer.status_code == 200  # Daraja's contract: accepted, never trusted
    row = await stack.wait_for_deposit(body["id"], {DepositStatus.NEEDS_ATTENTION})
    assert field in (row.failure_reason or "")
    assert "does not match the STK push" in (row.failure_reason or "")
    alerts = await open_alerts(stack, "mpesa_payment_mismatch")
    assert any(body["id"] in a["message"] and field in a["message"] for a in alerts)
    # the alert is the deposit's tenant's: its admin sees it, another tenant's admin does not
    ours = await open_alerts(stack, "mpesa_payment_mismatch", tenant)
    assert any(body["id"] in a["message"] for a in ours)
    theirs = await open_alerts(stack, "mpesa_payment_mismatch", unique_tenant())
    assert not any(body["id"] in a["message"] for a in theirs)
    view = (await stack.api.get(body["status_url"], headers=headers)).json()
    assert view["status"] == "needs_attention" and field in (view["error"] or "")
    await assert_nothing_moved(stack, headers, body["id"], wallet, nonce)
    await stack.deposit_handle(body["workflow_id"]).signal("abandon", "forged callback")
    await stack.wait_for_deposit(body["id"], {DepositStatus.ABANDONED})
    await assert_nothing_moved(stack, headers, body["id"], wallet, nonce)


async def test_success_callback_for_an_unknown_checkout_request_id_credits_nothing(
    stack: Stack,
) -> None:
    nonce = await treasury_nonce(stack)
    checkout = f"ws_CO_forged_{uuid.uuid4().hex[:12]}"
    forged = success_body("29115-34620561-1", checkout, 150.0, "254799990001")
    answer = await stack.api.post(stack.callback_path, json=forged)
    assert answer.status_code == 200
    alerts = await open_alerts(stack, "mpesa_unmatched_callback")
    assert [a["value"] for a in alerts if a["value"] == checkout] == [checkout]
    assert "nothing was credited" in next(a["message"] for a in alerts if a["value"] == checkout)
    assert await treasury_nonce(stack) == nonce
    # the platform's operator acknowledges it (no tenant owns it yet): it is then cleared
    admin = stack.platform_admin()
    alert_id = next(a["id"] for a in alerts if a["value"] == checkout)
    acked = await stack.api.post(f"/api/v1/alerts/{alert_id}/acknowledge", headers=admin)
    assert acked.status_code == 200 and acked.json()["status"] == "cleared"


async def test_success_callback_contradicted_by_the_query_never_credits(stack: Stack) -> None:
    headers = stack.auth("trent", unique_tenant())
    wallet = new_wallet()
    nonce = await treasury_nonce(stack)
    body = (
        await initiate(stack, headers, phone=PHONE_CANCELLED_SILENT, amount=150, wallet=wallet)
    ).json()
    row = await stack.wait_for_deposit(body["id"], {DepositStatus.AWAITING_PAYMENT})
    assert row.checkout_request_id and row.merchant_request_id
    # everything the push said, the right token, a receipt: only Daraja knows it is false
    forged = success_body(
        row.merchant_request_id, row.checkout_request_id, 150.0, PHONE_CANCELLED_SILENT
    )
    assert (await stack.api.post(stack.callback_path, json=forged)).status_code == 200
    row = await stack.wait_for_deposit(body["id"], {DepositStatus.NEEDS_ATTENTION})
    assert "STK Push Query says ResultCode 1032" in (row.failure_reason or "")
    alerts = await open_alerts(stack, "mpesa_payment_mismatch")
    assert any(body["id"] in a["message"] for a in alerts)
    await assert_nothing_moved(stack, headers, body["id"], wallet, nonce)
    assert stack.daraja_state.status_queries.get("SFORGED0001") is None
    await stack.deposit_handle(body["workflow_id"]).signal("abandon", "forged callback")
    await stack.wait_for_deposit(body["id"], {DepositStatus.ABANDONED})


async def test_push_accepted_then_5xx_prompts_once_and_credits_once(stack: Stack) -> None:
    headers = stack.auth("peggy", unique_tenant())
    wallet = new_wallet()
    pushes_before = stack.daraja_state.stk_pushes
    body = (
        await initiate(stack, headers, phone=PHONE_ANSWER_LOST, amount=40, wallet=wallet)
    ).json()
    row = await stack.wait_for_deposit(body["id"], {DepositStatus.CREDITED}, timeout=40)
    # one prompt: the sandbox saw one push for this deposit, whose callback was adopted
    prompts = [t for t in stack.daraja_state.transactions.values() if t.phone == PHONE_ANSWER_LOST]
    assert len(prompts) == 1 and stack.daraja_state.stk_pushes - pushes_before == 1
    assert row.checkout_request_id == prompts[0].checkout_request_id
    assert row.mpesa_receipt == prompts[0].receipt
    # one credit, confirmed by Transaction Status for that receipt
    assert stack.daraja_state.status_queries.get(prompts[0].receipt) == 1
    assert await ledger_entries_for(stack, body["id"]) == 1
    assert await stack.chain.usdc_balance(wallet) == usdc_for(stack, 40)
    state = await stack.deposit_handle(body["workflow_id"]).result()
    assert state.pushes_sent == 1
    assert state.confirmed_by == ["stk_query", "transaction_status"]


async def test_the_202_carries_the_fx_quote_and_the_payment_honours_it(stack: Stack) -> None:
    headers = stack.auth("quinn", unique_tenant())
    wallet = new_wallet()
    before = datetime.now(UTC)
    response = await initiate(stack, headers, amount=150, wallet=wallet)
    assert response.status_code == 202, response.text
    quote = response.json()["quote"]
    assert quote["kes_per_usdc"] == stack.settings.fx_kes_per_usdc
    assert quote["usdc_minor"] == usdc_for(stack, 150)
    expires = datetime.fromisoformat(quote["expires_at"])
    assert (expires - before).total_seconds() >= stack.settings.fx_quote_ttl_seconds - 1
    deposit_id = response.json()["id"]
    row = await stack.wait_for_deposit(deposit_id, {DepositStatus.CREDITED})
    assert row.usdc_minor == quote["usdc_minor"] and row.fx_kes_per_usdc == quote["kes_per_usdc"]
    view = (await stack.api.get(f"/api/v1/deposit/{deposit_id}", headers=headers)).json()
    assert view["quote"] == quote
    state = await stack.deposit_handle(response.json()["workflow_id"]).result()
    assert state.fx_quote_kes_per_usdc == quote["kes_per_usdc"]
