"""On-chain USDC deposits through the API, on anvil with real transfers: the scanner sees them,
the watch waits for confirmations and credits; expiry, late transfers and reorgs are handled."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from api.auth import Principal
from domain.deposit_watch import DepositWatchState
from domain.search import SETTLE_STATUS
from operations.deposit_intents import create_and_watch, ensure_scanner, watch_config
from store.models import DepositTransfer
from tests.fixtures.stack import Stack, eventually, unique_tenant
from workflows import chain_scanner
from workflows.deposit_watch import DepositWatch

pytestmark = pytest.mark.usefixtures("balanced_ledger")


async def create(stack: Stack, headers: dict[str, str], amount: Any = "25.50", chain: Any = "base"):
    return await stack.api.post(
        "/api/v1/deposit/intent/create", json={"amount": amount, "chain": chain}, headers=headers
    )


async def view(stack: Stack, intent_id: str, headers: dict[str, str]) -> dict[str, Any]:
    response = await stack.api.get(f"/api/v1/deposit/intent/{intent_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def until_status(
    stack: Stack, intent_id: str, headers: dict[str, str], statuses: set[str], timeout: float = 30
):
    return await eventually(
        lambda: view(stack, intent_id, headers),
        lambda v: v["status"] in statuses,
        timeout=timeout,
        what=f"intent {intent_id} to reach {sorted(statuses)}",
    )


async def usdc(stack: Stack, headers: dict[str, str]) -> int:
    balances = (await stack.api.get("/api/v1/portfolio", headers=headers)).json()["balances"]
    return {b["currency"]: b["balance_minor"] for b in balances}.get("USDC", 0)


async def short_intent(
    stack: Stack, subject: str, tenant: str, amount_minor: int, ttl_seconds: float, **config: Any
) -> str:
    """An intent with a short life (the API's TTL is an hour), made the way the API makes them."""
    return await create_and_watch(
        stack.settings,
        stack.sessions,
        stack.temporal,
        stack.chain.client,
        Principal(subject=subject, tenant=tenant, roles=frozenset({"user"})),
        amount_minor,
        ttl=timedelta(seconds=ttl_seconds),
        config=watch_config(stack.settings).model_copy(update=config),
    )


async def test_exact_amount_is_credited_after_confirmations(stack: Stack) -> None:
    headers = stack.auth("olga", unique_tenant())
    response = await create(stack, headers, "25.50")
    assert response.status_code == 201, response.text
    intent = response.json()
    assert intent["status"] == "open" and intent["amount_minor"] == 25_500_000
    assert intent["address"].startswith("0x") and len(intent["address"]) == 42
    receipt = await stack.chain.pay(intent["address"], 25_500_000)
    done = await until_status(stack, intent["id"], headers, {"paid"})
    assert done["received_minor"] == 25_500_000
    (transfer,) = done["transfers"]
    assert transfer["status"] == "credited" and transfer["tx_hash"] == receipt["transactionHash"]
    assert await usdc(stack, headers) == 25_500_000
    # the credit waited for the confirmations
    head = await stack.chain.client.block_number()
    assert head - int(receipt["blockNumber"], 16) + 1 >= stack.settings.evm_confirmations
    description = await stack.handle(intent["workflow_id"]).describe()
    assert description.typed_search_attributes.get(SETTLE_STATUS) == "succeeded"


async def test_each_intent_has_its_own_address(stack: Stack) -> None:
    headers = stack.auth("pia", unique_tenant())
    first, second = (
        (await create(stack, headers, "1")).json(),
        (await create(stack, headers, "1")).json(),
    )
    assert first["address"] != second["address"]


async def test_partial_payment_is_credited_and_the_status_says_so(stack: Stack) -> None:
    tenant = unique_tenant()
    headers = stack.auth("quinn", tenant)
    intent_id = await short_intent(stack, "quinn", tenant, 10_000_000, ttl_seconds=6)
    intent = await view(stack, intent_id, headers)
    await stack.chain.pay(intent["address"], 4_000_000)
    partial = await until_status(stack, intent_id, headers, {"partially_paid"})
    assert partial["received_minor"] == 4_000_000
    assert await usdc(stack, headers) == 4_000_000
    final = await until_status(stack, intent_id, headers, {"expired_partially_paid"}, timeout=30)
    assert final["received_minor"] == 4_000_000


async def test_over_payment_is_credited_in_full(stack: Stack) -> None:
    headers = stack.auth("rosa", unique_tenant())
    intent = (await create(stack, headers, "5")).json()
    await stack.chain.pay(intent["address"], 7_000_000)
    done = await until_status(stack, intent["id"], headers, {"overpaid"})
    assert done["received_minor"] == 7_000_000
    assert await usdc(stack, headers) == 7_000_000


async def test_two_deposits_to_two_intents_in_one_block(stack: Stack) -> None:
    headers = stack.auth("sven", unique_tenant())
    first, second = (
        (await create(stack, headers, "3")).json(),
        (await create(stack, headers, "4")).json(),
    )
    receipts = await stack.chain.pay_together(
        [(first["address"], 3_000_000), (second["address"], 4_000_000)]
    )
    assert receipts[0]["blockNumber"] == receipts[1]["blockNumber"], (
        "the batch should share a block"
    )
    assert (await until_status(stack, first["id"], headers, {"paid"}))[
        "received_minor"
    ] == 3_000_000
    assert (await until_status(stack, second["id"], headers, {"paid"}))[
        "received_minor"
    ] == 4_000_000
    assert await usdc(stack, headers) == 7_000_000


async def test_expiry_with_no_deposit(stack: Stack) -> None:
    tenant = unique_tenant()
    headers = stack.auth("tara", tenant)
    intent_id = await short_intent(stack, "tara", tenant, 1_000_000, ttl_seconds=3)
    final = await until_status(stack, intent_id, headers, {"expired"}, timeout=30)
    assert final["received_minor"] == 0 and final["transfers"] == []
    description = await stack.handle(final["workflow_id"]).describe()
    assert description.typed_search_attributes.get(SETTLE_STATUS) == "expired"


async def test_transfer_after_expiry_is_recorded_and_flagged_not_credited(stack: Stack) -> None:
    tenant = unique_tenant()
    headers = stack.auth("ugo", tenant)
    intent_id = await short_intent(stack, "ugo", tenant, 2_000_000, ttl_seconds=2)
    intent = await until_status(stack, intent_id, headers, {"expired"}, timeout=30)
    receipt = await stack.chain.pay(intent["address"], 2_000_000)
    flagged = await eventually(
        lambda: view(stack, intent_id, headers),
        lambda v: v["late_transfer_seen"],
        what="the late transfer to be flagged",
    )
    assert flagged["status"] == "expired" and flagged["received_minor"] == 0
    assert [t["status"] for t in flagged["transfers"]] == ["late"]
    assert flagged["transfers"][0]["tx_hash"] == receipt["transactionHash"]
    assert await usdc(stack, headers) == 0


async def test_reorg_before_confirmations_is_not_credited(stack: Stack) -> None:
    tenant = unique_tenant()
    headers = stack.auth("vera", tenant)
    # many confirmations so that the reorg lands before the transfer counts
    intent_id = await short_intent(
        stack, "vera", tenant, 6_000_000, ttl_seconds=8, confirmations=12
    )
    intent = await view(stack, intent_id, headers)
    receipt = await stack.chain.pay(intent["address"], 6_000_000)
    block = int(receipt["blockNumber"], 16)
    handle = stack.temporal.get_workflow_handle(
        intent["workflow_id"], result_type=DepositWatchState
    )

    async def state() -> DepositWatchState:
        return await handle.query(DepositWatch.status)

    await eventually(state, lambda s: len(s.pending) == 1, what="the watch to hold the transfer")
    head = await stack.chain.client.block_number()
    await stack.chain.rpc(
        "anvil_reorg", head - block + 1, []
    )  # the transfer's block and all after it
    assert await stack.chain.client.receipt(receipt["transactionHash"]) is None
    reorged = await eventually(
        state, lambda s: len(s.reorged) == 1, what="the watch to see the reorg"
    )
    assert reorged.received_minor == 0 and not reorged.credited
    final = await until_status(stack, intent_id, headers, {"expired"}, timeout=40)
    assert final["received_minor"] == 0
    async with stack.sessions() as session:
        rows = (
            (
                await session.execute(
                    select(DepositTransfer).where(DepositTransfer.intent_id == intent_id)
                )
            )
            .scalars()
            .all()
        )
    assert [r.status for r in rows] == ["reorged"]
    assert await usdc(stack, headers) == 0


BAD = [
    pytest.param({"amount": 25.5, "chain": "base"}, "amount", id="amount-as-number"),
    pytest.param({"amount": "25.1234567", "chain": "base"}, "amount", id="seven-places"),
    pytest.param({"amount": "0", "chain": "base"}, "amount", id="zero"),
    pytest.param({"amount": "-1", "chain": "base"}, "amount", id="negative"),
    pytest.param({"amount": "1e3", "chain": "base"}, "amount", id="exponent"),
    pytest.param({"amount": "99999999999", "chain": "base"}, "amount", id="too-much"),
    pytest.param({"amount": "1", "chain": "ethereum"}, "chain", id="unknown-chain"),
    pytest.param({"chain": "base"}, "amount", id="missing-amount"),
]


@pytest.mark.parametrize(("body", "field"), BAD)
async def test_bad_intent_input_is_refused_and_changes_nothing(
    stack: Stack, body: dict[str, Any], field: str
) -> None:
    tenant = unique_tenant()
    response = await stack.api.post(
        "/api/v1/deposit/intent/create", json=body, headers=stack.auth("walt", tenant)
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    assert (await stack.temporal.count_workflows(f'SettleTenant = "{tenant}"')).count == 0


async def test_someone_elses_intent_is_404(stack: Stack) -> None:
    tenant = unique_tenant()
    intent = (await create(stack, stack.auth("xena", tenant), "1")).json()
    other = await stack.api.get(intent["status_url"], headers=stack.auth("yuri", tenant))
    assert other.status_code == 404
    assert (
        await stack.api.get(
            f"/api/v1/deposit/intent/{uuid.uuid4()}", headers=stack.auth("xena", tenant)
        )
    ).status_code == 404


async def test_watch_credits_by_itself_while_the_scanner_is_down(stack: Stack) -> None:
    tenant = unique_tenant()
    headers = stack.auth("zoe", tenant)
    intent_id = await short_intent(
        stack,
        "zoe",
        tenant,
        3_000_000,
        ttl_seconds=40,
        scanner_stale_after_seconds=1.0,
        fallback_interval_seconds=1.0,
        # made while the scanner was fresh, the watch would wait this long before looking
        healthy_fallback_interval_seconds=1.0,
    )
    scanner = stack.handle(
        chain_scanner.workflow_id_for(stack.settings.evm_chain, stack.settings.task_queue_prefix)
    )
    await scanner.terminate("test: the scanner is down")
    try:
        intent = await view(stack, intent_id, headers)
        await stack.chain.pay(intent["address"], 3_000_000)
        done = await until_status(stack, intent_id, headers, {"paid"}, timeout=40)
        assert done["received_minor"] == 3_000_000
        result = await stack.temporal.get_workflow_handle(
            done["workflow_id"], result_type=DepositWatchState
        ).result()
        assert result.fallback_queries >= 1
    finally:
        await ensure_scanner(stack.temporal, stack.settings)


# --- hostile chain data: dust, zero-value transfers, late transfers ------------------------------


async def test_zero_value_transfer_then_the_real_one_is_credited_once(stack: Stack) -> None:
    """Address-poisoning bots send 0-value Transfers: once that failed the watch for good."""
    headers = stack.auth("abe", unique_tenant())
    intent = (await create(stack, headers, "2")).json()
    poison = await stack.chain.pay(intent["address"], 0)
    await eventually(
        lambda: view(stack, intent["id"], headers),
        lambda v: [t["status"] for t in v["transfers"]] == ["ignored"],
        what="the 0-value transfer to be recorded as ignored",
    )
    receipt = await stack.chain.pay(intent["address"], 2_000_000)
    done = await until_status(stack, intent["id"], headers, {"paid"})
    statuses = {t["tx_hash"]: t["status"] for t in done["transfers"]}
    assert statuses == {
        poison["transactionHash"]: "ignored",
        receipt["transactionHash"]: "credited",
    }
    assert done["received_minor"] == 2_000_000 and await usdc(stack, headers) == 2_000_000
    description = await stack.handle(intent["workflow_id"]).describe()
    assert description.typed_search_attributes.get(SETTLE_STATUS) == "succeeded"


async def test_fifty_dust_transfers_then_the_real_one_is_credited(stack: Stack) -> None:
    """Dust in ten blocks used to wake the watch each time (a check each) and be credited."""
    tenant = unique_tenant()
    headers = stack.auth("bea", tenant)
    intent_id = await short_intent(
        stack, "bea", tenant, 3_000_000, ttl_seconds=60, max_checks=8, fallback_interval_seconds=60
    )
    intent = await view(stack, intent_id, headers)
    for _ in range(10):
        await stack.chain.pay_together([(intent["address"], 1)] * 5)  # 0.000001 USDC each
        await asyncio.sleep(0.4)  # the scanner sees them in several rounds
    await eventually(
        lambda: view(stack, intent_id, headers),
        lambda v: len(v["transfers"]) == 50,
        what="the dust to be recorded",
    )
    await stack.chain.pay(intent["address"], 3_000_000)
    done = await until_status(stack, intent_id, headers, {"paid"})
    statuses = [t["status"] for t in done["transfers"]]
    assert statuses.count("ignored") == 50 and statuses.count("credited") == 1
    assert done["received_minor"] == 3_000_000 and await usdc(stack, headers) == 3_000_000


async def test_late_transfer_is_credited_once_by_an_admin(stack: Stack) -> None:
    tenant = unique_tenant()
    headers = stack.auth("cid", tenant)
    admin = stack.auth("ops", tenant, roles=("admin",))
    intent_id = await short_intent(stack, "cid", tenant, 2_000_000, ttl_seconds=2)
    intent = await until_status(stack, intent_id, headers, {"expired"}, timeout=30)
    poison = await stack.chain.pay(intent["address"], 0)
    dust = await eventually(
        lambda: view(stack, intent_id, headers),
        lambda v: len(v["transfers"]) == 1,
        what="the 0-value transfer after expiry to be recorded",
    )
    assert dust["transfers"][0]["status"] == "ignored" and not dust["late_transfer_seen"]
    receipt = await stack.chain.pay(intent["address"], 2_000_000)
    await eventually(
        lambda: view(stack, intent_id, headers),
        lambda v: v["late_transfer_seen"],
        what="the late transfer to be flagged",
    )
    path = f"/api/v1/deposit/intent/{intent_id}/credit-late"
    # dust is not creditable this way
    refused = await stack.api.post(
        path,
        json={"tx_hash": poison["transactionHash"], "log_index": 0},
        headers=stack.auth("ops", tenant, roles=("admin",)),
    )
    assert refused.status_code == 409, refused.text
    body = {"tx_hash": receipt["transactionHash"], "log_index": 0}

    # the owner is not an operator; another tenant's admin does not see the intent
    assert (await stack.api.post(path, json=body, headers=headers)).status_code == 403
    other = stack.auth("ops", unique_tenant(), roles=("admin",))
    assert (await stack.api.post(path, json=body, headers=other)).status_code == 404
    wrong = {"tx_hash": receipt["transactionHash"], "log_index": 7}
    assert (await stack.api.post(path, json=wrong, headers=admin)).status_code == 404
    bad = await stack.api.post(path, json={"tx_hash": "0x12", "log_index": 0}, headers=admin)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "tx_hash"
    assert await usdc(stack, headers) == 0

    first = await stack.api.post(path, json=body, headers=admin)
    assert first.status_code == 202, first.text
    job = first.json()
    assert job["status"] == "crediting"
    credited = await eventually(
        lambda: view(stack, intent_id, headers),
        lambda v: [t["status"] for t in v["transfers"]] == ["ignored", "credited"],
        what="the late transfer to be credited",
    )
    assert credited["received_minor"] == 2_000_000
    assert await usdc(stack, headers) == 2_000_000
    outcome = await stack.handle(job["workflow_id"]).result()
    assert outcome["status"] == "credited"

    again = await stack.api.post(path, json=body, headers=admin)
    assert again.status_code == 200 and again.json()["status"] == "already_credited"
    assert await usdc(stack, headers) == 2_000_000
    assert (await view(stack, intent_id, headers))["received_minor"] == 2_000_000
    seen = await stack.api.get(job["job_url"], headers=admin)
    assert seen.status_code == 200, seen.text
