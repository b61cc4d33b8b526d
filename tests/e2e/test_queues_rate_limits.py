"""Queues and rate limits over HTTP, against the real dev server, worker, sandboxes and database.

Pause and emergency stop set the server-side rate limit of activity task queues to 0; these tests
check that deposits started while paused do not move, then all finish after resume. The stack's
task queues are shared by the session, so every test lifts every limit it may have left (finally).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from api.task_queue_limits import describe, set_limit
from domain.mpesa import DepositStatus
from domain.queues import ActivityQueue, activity_queue_for_prefix
from tests.e2e.test_mpesa_deposit_api import PHONE_OK, initiate, portfolio, usdc_for
from tests.fixtures.stack import Stack, eventually, unique_tenant

QUEUES = "/api/v1/queues"
LIMITS = "/api/v1/rate-limits"
MPESA_QUEUES = {"mpesa", "db", "fx", "evm-write"}


@pytest.fixture
async def lifted(stack: Stack) -> AsyncIterator[None]:
    """Whatever a test paused or stopped is lifted at its end, pass or fail."""
    try:
        yield
    finally:
        for queue in ActivityQueue:
            task_queue = activity_queue_for_prefix(stack.settings.task_queue_prefix, queue)
            if (await describe(stack.temporal, task_queue)).rate_per_second is not None:
                await set_limit(stack.temporal, task_queue, None, "settle test cleanup")


pytestmark = pytest.mark.usefixtures("balanced_ledger", "lifted")


async def _deposits(stack: Stack, owner: dict[str, str], n: int) -> list[dict[str, Any]]:
    responses = [await initiate(stack, owner, phone=PHONE_OK, amount=20 + i) for i in range(n)]
    assert all(r.status_code == 202 for r in responses), [r.text for r in responses]
    return [r.json() for r in responses]


async def _statuses(stack: Stack, deposits: list[dict[str, Any]]) -> list[str | None]:
    rows = [await stack.deposit_row(d["id"]) for d in deposits]
    return [row.status if row else None for row in rows]


async def test_paused_queue_holds_deposits_until_resumed(stack: Stack) -> None:
    tenant = unique_tenant()
    admin = stack.auth("ops", tenant, ["admin"])
    platform = stack.auth("root", unique_tenant(), ["platform_admin"])
    owner = stack.auth("wanjiru", tenant)

    paused = await stack.api.post(f"{QUEUES}/mpesa_deposit/pause", headers=platform)
    assert paused.status_code == 200, paused.text
    body = paused.json()
    assert body["paused"] is True and body["action"] == "pause"
    assert {q["system"] for q in body["task_queues"]} == MPESA_QUEUES
    assert all(q["stopped"] and "queue:mpesa_deposit" in q["held_by"] for q in body["task_queues"])
    assert "deposit_watch" in body["also_holds"]  # they share the db task queue

    pushes_before = stack.daraja_state.stk_pushes
    deposits = await _deposits(stack, owner, 3)
    await asyncio.sleep(2.0)
    assert await _statuses(stack, deposits) == [DepositStatus.INITIATED] * 3
    assert stack.daraja_state.stk_pushes == pushes_before

    status = await eventually(
        lambda: stack.api.get(f"{QUEUES}/mpesa_deposit/status", headers=admin),
        lambda r: r.status_code == 200 and r.json()["counts"]["running"] == 3,
        what="three running deposits counted",
    )
    assert status.json()["paused"] is True and status.json()["total"] == 3
    mpesa_limit = (await stack.api.get(f"{LIMITS}/status/mpesa", headers=platform)).json()
    assert mpesa_limit["stopped"] is True and mpesa_limit["held_by"] == ["queue:mpesa_deposit"]

    resumed = await stack.api.post(f"{QUEUES}/mpesa_deposit/resume", headers=platform)
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["paused"] is False
    by_system = {q["system"]: q for q in resumed.json()["task_queues"]}
    assert by_system["mpesa"]["rate_per_second"] == stack.settings.rate_limit_mpesa_per_second
    assert by_system["db"]["rate_per_second"] is None and not by_system["db"]["stopped"]

    for d in deposits:
        await stack.wait_for_deposit(d["id"], {DepositStatus.CREDITED}, timeout=40)
    assert await portfolio(stack, owner) == sum(usdc_for(stack, 20 + i) for i in range(3))
    await eventually(
        lambda: stack.api.get(f"{QUEUES}/mpesa_deposit/status", headers=admin),
        lambda r: r.json()["counts"]["succeeded"] == 3 and r.json()["counts"]["running"] == 0,
        what="three succeeded deposits counted",
    )


async def test_jobs_are_paged_and_clear_cancels_open_jobs(stack: Stack) -> None:
    tenant = unique_tenant()
    admin = stack.auth("ops", tenant, ["admin"])
    platform = stack.auth("root", unique_tenant(), ["platform_admin"])
    owner = stack.auth("kamau", tenant)
    paused = await stack.api.post(f"{QUEUES}/mpesa_deposit/pause", headers=platform)
    assert paused.status_code == 200
    deposits = await _deposits(stack, owner, 3)
    ids = {d["workflow_id"] for d in deposits}

    await eventually(
        lambda: stack.api.get(f"{QUEUES}/mpesa_deposit/jobs", headers=admin),
        lambda r: {j["id"] for j in r.json()["items"]} == ids,
        what="three jobs listed",
    )
    seen: list[str] = []
    cursor = None
    for _ in range(4):
        params: dict[str, Any] = {"limit": 2, "status": "running"}
        if cursor:
            params["cursor"] = cursor
        page = await stack.api.get(f"{QUEUES}/mpesa_deposit/jobs", params=params, headers=admin)
        assert page.status_code == 200, page.text
        seen += [j["id"] for j in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)
    none = await stack.api.get(
        f"{QUEUES}/mpesa_deposit/jobs", params={"status": "succeeded"}, headers=admin
    )
    assert none.json() == {"items": [], "next_cursor": None}

    refused = await stack.api.post(f"{QUEUES}/mpesa_deposit/clear", headers=admin)
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "confirm"
    assert await _statuses(stack, deposits) == [DepositStatus.INITIATED] * 3

    cleared = await stack.api.post(
        f"{QUEUES}/mpesa_deposit/clear", params={"confirm": "true"}, headers=admin
    )
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["requested"] == 3 and cleared.json()["cancel_requested"] == 3
    assert (await stack.api.post(f"{QUEUES}/mpesa_deposit/resume", headers=platform)).is_success
    for d in deposits:
        await stack.wait_for_deposit(d["id"], {DepositStatus.FAILED}, timeout=30)
    assert await portfolio(stack, owner) == 0


async def test_roles_and_bad_input(stack: Stack) -> None:
    tenant = unique_tenant()
    admin = stack.auth("ops", tenant, ["admin"])
    platform = stack.auth("root", unique_tenant(), ["platform_admin"])
    venue = stack.auth("venue", tenant, ["venue_admin"])
    user = stack.auth("amara", tenant)

    listing = await stack.api.get(QUEUES, headers=venue)
    assert listing.status_code == 200
    mpesa = next(q for q in listing.json()["items"] if q["name"] == "mpesa_deposit")
    prefix = stack.settings.task_queue_prefix
    assert mpesa["workflow_task_queue"] == f"{prefix}workflows"
    assert f"{prefix}mpesa" in mpesa["activity_task_queues"]
    assert (await stack.api.get(f"{QUEUES}/mpesa_deposit/status", headers=venue)).status_code == 200
    # provider limits are the platform's: no tenant role reads or changes them
    assert (await stack.api.get(f"{LIMITS}/status/stripe", headers=venue)).status_code == 403
    assert (await stack.api.get(f"{LIMITS}/status/stripe", headers=platform)).status_code == 200

    assert (await stack.api.get(QUEUES)).status_code == 401
    assert (await stack.api.get(QUEUES, headers=user)).status_code == 403
    assert (await stack.api.get(f"{LIMITS}/status/stripe", headers=user)).status_code == 403
    for who in (user, venue):
        r = await stack.api.post(f"{QUEUES}/mpesa_deposit/clear?confirm=true", headers=who)
        assert r.status_code == 403, r.text
    # a tenant's admin cannot stop a provider or pause a shared queue for every tenant
    for who in (user, venue, admin):
        for path in ("pause", "resume"):
            r = await stack.api.post(f"{QUEUES}/mpesa_deposit/{path}", headers=who)
            assert r.status_code == 403, (path, r.text)
        assert (await stack.api.post(f"{LIMITS}/reset/stripe", headers=who)).status_code == 403
        stop = await stack.api.post(f"{LIMITS}/emergency-stop", json={"all": True}, headers=who)
        assert stop.status_code == 403
    assert not (await stack.api.get(f"{LIMITS}/status/stripe", headers=platform)).json()["stopped"]

    missing = await stack.api.get(f"{QUEUES}/nope/status", headers=admin)
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "name"
    assert "nope" in missing.json()["error"]["message"]
    missing = await stack.api.post(f"{QUEUES}/nope/pause", headers=platform)
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "name"
    missing = await stack.api.get(f"{LIMITS}/status/paypal", headers=platform)
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "key"
    bad = await stack.api.get(f"{QUEUES}/mpesa_deposit/jobs?status=weird", headers=admin)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "status"
    bad = await stack.api.get(f"{QUEUES}/mpesa_deposit/jobs?limit=0", headers=admin)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "limit"
    bad = await stack.api.get(f"{QUEUES}/mpesa_deposit/jobs?cursor=a%22b", headers=admin)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "cursor"
    for body in ({}, {"key": "stripe", "all": True}, {"key": "paypal"}, {"all": False}):
        bad = await stack.api.post(f"{LIMITS}/emergency-stop", json=body, headers=platform)
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "key", body
    bad = await stack.api.post(f"{LIMITS}/resume", json={"keys": ["stripe"]}, headers=platform)
    assert bad.status_code == 422


async def test_rate_limit_status_reset_stop_resume_round_trip(stack: Stack) -> None:
    admin = stack.auth("ops", unique_tenant(), ["platform_admin"])
    default = stack.settings.rate_limit_stripe_per_second

    status = (await stack.api.get(f"{LIMITS}/status/stripe", headers=admin)).json()
    assert status["task_queue"] == f"{stack.settings.task_queue_prefix}stripe"
    assert status["default_rate_per_second"] == default and status["stopped"] is False

    reset = await stack.api.post(f"{LIMITS}/reset/stripe", headers=admin)
    assert reset.status_code == 200 and reset.json()["rate_per_second"] == default

    stopped = await stack.api.post(
        f"{LIMITS}/emergency-stop", json={"key": "stripe"}, headers=admin
    )
    assert stopped.status_code == 200, stopped.text
    (item,) = stopped.json()["items"]
    assert item["stopped"] is True and item["held_by"] == ["emergency-stop"]
    status = (await stack.api.get(f"{LIMITS}/status/stripe", headers=admin)).json()
    assert status["stopped"] is True and status["rate_per_second"] == 0
    refused = await stack.api.post(f"{LIMITS}/reset/stripe", headers=admin)
    assert refused.status_code == 409 and refused.json()["error"]["field"] == "key"

    resumed = await stack.api.post(f"{LIMITS}/resume", json={"key": "stripe"}, headers=admin)
    (item,) = resumed.json()["items"]
    assert item["stopped"] is False and item["rate_per_second"] == default

    everything = await stack.api.post(f"{LIMITS}/emergency-stop", json={"all": True}, headers=admin)
    assert {i["key"] for i in everything.json()["items"]} == {
        "stripe",
        "mpesa",
        "solana",
        "evm-write",
        "smtp",
    }
    assert all(i["stopped"] for i in everything.json()["items"])
    smtp = (await stack.api.get(f"{LIMITS}/status/smtp", headers=admin)).json()
    assert smtp["task_queue"].endswith("notify") and smtp["stopped"] is True

    # a paused queue keeps holding a task queue after the emergency stop is lifted
    assert (await stack.api.post(f"{QUEUES}/nft_transfer/pause", headers=admin)).is_success
    back = await stack.api.post(f"{LIMITS}/resume", json={"all": True}, headers=admin)
    items = {i["key"]: i for i in back.json()["items"]}
    assert items["solana"]["stopped"] is True
    assert items["solana"]["held_by"] == ["queue:nft_transfer"]
    assert items["mpesa"]["stopped"] is False
    assert items["mpesa"]["rate_per_second"] == stack.settings.rate_limit_mpesa_per_second
    assert (await stack.api.post(f"{QUEUES}/nft_transfer/resume", headers=admin)).is_success
    solana = (await stack.api.get(f"{LIMITS}/status/solana", headers=admin)).json()
    assert solana["stopped"] is False and solana["held_by"] == []
