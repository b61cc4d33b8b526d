"""A success callback no deposit recorded is never silently kept (issue 14 §1): it is an unmatched
payment, with an alert, listed for an admin (and with the dead letters), who credits it to a
deposit (through the ledger, once) or marks it refunded. Real stack: dev server, the Daraja
sandbox, anvil and PostgreSQL."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from domain.mpesa import DepositStatus
from store.models import MpesaUnmatchedPayment
from tests.e2e.test_mpesa_deposit_api import initiate, ledger_entries_for, portfolio
from tests.e2e.test_mpesa_trust import open_alerts, set_item, success_body
from tests.fixtures.stack import Stack, unique_tenant

pytestmark = pytest.mark.usefixtures("balanced_ledger")

PHONE_CANCELLED_SILENT = "254700000003"  # cancelled, no callback: STK Push Query says 1032
ALERT = "mpesa_unmatched_callback"
URL = "/api/v1/deposit/unmatched-payments"


def paid(merchant: str, checkout: str, kes: float, phone: str, receipt: str) -> dict[str, Any]:
    """A success callback, as Daraja sends it, with a receipt of its own."""
    body = success_body(merchant, checkout, kes, phone)
    return set_item(body, "MpesaReceiptNumber", receipt)


def new_receipt() -> str:
    return "S" + secrets.token_hex(5).upper()[:9]


async def listed(stack: Stack, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    response = await stack.api.get(URL, headers=headers, params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def payment_row(stack: Stack, checkout: str) -> MpesaUnmatchedPayment:
    async with stack.sessions() as session:
        query = select(MpesaUnmatchedPayment).where(
            MpesaUnmatchedPayment.checkout_request_id == checkout
        )
        return (await session.execute(query)).scalar_one()


async def test_a_payment_after_its_deposit_failed_is_listed_and_credited_once(
    stack: Stack,
) -> None:
    """The deposit ended failed (Daraja said cancelled); a success callback for its push comes
    later. It is an open unmatched payment of the deposit's tenant, with an alert; a user is
    refused; the tenant's admin credits it to that deposit once (KES, from the M-Pesa float)."""
    tenant = unique_tenant()
    user = stack.auth("wanjiru", tenant)
    admin = stack.auth("ops", tenant, roles=("user", "admin"))
    body = (await initiate(stack, user, phone=PHONE_CANCELLED_SILENT, amount=55)).json()
    row = await stack.wait_for_deposit(body["id"], {DepositStatus.FAILED}, timeout=40)
    await stack.deposit_handle(body["workflow_id"]).result()  # its workflow has ended
    assert row.checkout_request_id
    receipt = new_receipt()
    late = paid("1-late-1", row.checkout_request_id, 55.0, PHONE_CANCELLED_SILENT, receipt)
    answer = await stack.api.post(stack.callback_path, json=late)
    assert answer.status_code == 200

    [item] = [i for i in await listed(stack, admin) if i["deposit_id"] == body["id"]]
    assert item["status"] == "open" and item["tenant"] == tenant
    assert item["amount_minor"] == 5_500 and item["receipt"] == receipt
    assert any(item["id"] in a["message"] for a in await open_alerts(stack, ALERT, tenant))
    # beside the dead letters
    dead = await stack.api.get("/api/v1/dead-letter", headers=admin)
    assert dead.status_code == 200, dead.text
    assert item["id"] in [p["id"] for p in dead.json()["unmatched_payments"]]
    # another tenant's admin sees nothing of it, and cannot resolve it
    other = stack.auth("ops", unique_tenant(), roles=("user", "admin"))
    assert item["id"] not in [i["id"] for i in await listed(stack, other)]
    resolve = f"{URL}/{item['id']}/resolve"
    credit = {"action": "credit", "deposit_id": body["id"]}
    assert (await stack.api.post(resolve, json=credit, headers=other)).status_code == 404
    # a user is refused, to read and to resolve
    assert (await stack.api.get(URL, headers=user)).status_code == 403
    assert (await stack.api.post(resolve, json=credit, headers=user)).status_code == 403
    # a credit needs its deposit: 422 naming the field, nothing changed
    missing = await stack.api.post(resolve, json={"action": "credit"}, headers=admin)
    assert missing.status_code == 422 and "deposit_id" in missing.text
    assert (await payment_row(stack, row.checkout_request_id)).status == "open"
    assert await ledger_entries_for(stack, body["id"]) == 0

    done = await stack.api.post(resolve, json=credit, headers=admin)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "credited"
    assert done.json()["resolved_by"] == f"{tenant}/ops"
    assert await ledger_entries_for(stack, body["id"]) == 1
    assert await portfolio(stack, user, "KES") == 5_500
    again = await stack.api.post(resolve, json=credit, headers=admin)
    assert again.status_code == 409
    assert await ledger_entries_for(stack, body["id"]) == 1
    view = (await stack.api.get(body["status_url"], headers=user)).json()
    assert view["status"] == "credited" and view["receipt"] == receipt
    assert not any(item["id"] in a["message"] for a in await open_alerts(stack, ALERT, tenant))


async def test_a_payment_nobody_can_own_is_the_platforms_and_marked_refunded(
    stack: Stack,
) -> None:
    """No deposit pushed for this phone and amount: the tenant is unknown, so only a
    platform_admin sees and resolves it. Crediting it to a credited deposit is refused (409);
    it is marked refunded with the reversal's reference, by whom it says."""
    phone = f"2547{secrets.randbelow(10**8):08d}"
    checkout = f"ws_CO_orphan_{uuid.uuid4().hex[:12]}"
    answer = await stack.api.post(
        stack.callback_path, json=paid("9-9-9", checkout, 70.0, phone, new_receipt())
    )
    assert answer.status_code == 200
    platform = stack.platform_admin()
    [item] = [i for i in await listed(stack, platform) if i["checkout_request_id"] == checkout]
    assert item["status"] == "open" and item["tenant"] is None and item["deposit_id"] is None
    assert any(item["id"] in a["message"] for a in await open_alerts(stack, ALERT))
    tenant = unique_tenant()
    admin = stack.auth("ops", tenant, roles=("user", "admin"))
    assert item["id"] not in [i["id"] for i in await listed(stack, admin)]
    resolve = f"{URL}/{item['id']}/resolve"
    refund = {"action": "refunded", "reference": "REV-2026-0042"}
    assert (await stack.api.post(resolve, json=refund, headers=admin)).status_code == 404

    # a deposit already credited with its own payment is never credited again
    user = stack.auth("baraka", tenant)
    credited = (await initiate(stack, user, amount=70)).json()
    await stack.wait_for_deposit(credited["id"], {DepositStatus.CREDITED}, timeout=40)
    credit = {"action": "credit", "deposit_id": credited["id"]}
    refused = await stack.api.post(resolve, json=credit, headers=platform)
    assert refused.status_code == 409 and "already credited" in refused.text
    assert await ledger_entries_for(stack, credited["id"]) == 1
    assert (await payment_row(stack, checkout)).status == "open"

    done = await stack.api.post(resolve, json=refund, headers=platform)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "refunded"
    assert done.json()["resolution_reference"] == "REV-2026-0042"
    assert done.json()["resolved_by"] == "ops/ops"
    row = await payment_row(stack, checkout)
    assert row.status == "refunded" and row.ledger_entry_id is None
    assert (await stack.api.post(resolve, json=refund, headers=platform)).status_code == 409
    assert not any(item["id"] in a["message"] for a in await open_alerts(stack, ALERT))
    refunded = await listed(stack, platform, status="refunded")
    assert item["id"] in [i["id"] for i in refunded]
