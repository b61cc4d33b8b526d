"""Abuse limits (issue 13 §6): past a per-minute limit on starting operations, 429 with
Retry-After, naming what was limited, and nothing started.

Before them, one caller could prompt a stranger's phone 50 times in a minute (each an STK push
Daraja sends to the phone), or spend the treasury's gas on anchor after anchor.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from api.app import create_app
from sandbox.serve import serve
from store.models import CredentialAnchorRecord, MpesaDeposit
from tests.fixtures.stack import Stack, unique_tenant

WALLET = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
CID = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"


@pytest.fixture
async def limited(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """An API with the abuse limits on (the stack's has them off), beside the stack's worker."""
    settings = stack.settings.model_copy(
        update={
            "abuse_stk_pushes_per_phone_per_minute": 3,
            "abuse_stk_pushes_per_user_per_minute": 10,
            "abuse_anchor_requests_per_tenant_per_minute": 2,
            "abuse_operations_per_tenant_per_minute": 600,
        }
    )
    server = await serve(create_app(settings, temporal=stack.temporal))
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            yield http
    finally:
        await server.stop()


async def start_of_a_minute() -> None:
    """The counters are per calendar minute: start a burst well inside one."""
    now = datetime.now(UTC)
    if now.second > 45:
        await asyncio.sleep(61 - now.second)


async def test_fifty_stk_pushes_to_one_phone_in_a_minute_the_limit_holds(
    stack: Stack, limited: httpx.AsyncClient
) -> None:
    tenant = unique_tenant()
    phone = f"2547{uuid.uuid4().int % 10**4:04d}1032"  # cancelled by the customer: quick
    pushes_before = stack.daraja_state.stk_pushes
    await start_of_a_minute()

    async def one(n: int) -> httpx.Response:
        return await limited.post(
            "/api/v1/deposit/initiate",
            json={"phone": phone, "amount": 150, "wallet_address": WALLET},
            headers=stack.auth(f"caller-{n}", tenant),  # 50 different users, one phone
        )

    answers = await asyncio.gather(*(one(n) for n in range(50)))
    codes = [a.status_code for a in answers]
    assert codes.count(202) == 3 and codes.count(429) == 47, codes
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.json()["error"]["field"] == "phone"
    assert 1 <= int(refused.headers["Retry-After"]) <= 61
    assert phone not in refused.text  # the phone is counted hashed, and never echoed
    async with stack.sessions() as session:
        rows = await session.scalar(
            select(func.count()).select_from(MpesaDeposit).where(MpesaDeposit.phone == phone)
        )
    assert rows == 3
    await asyncio.sleep(1.0)  # the three workflows push; the refused ones never started
    assert stack.daraja_state.stk_pushes - pushes_before <= 3


async def test_anchor_requests_past_the_tenant_limit_are_refused_and_record_nothing(
    stack: Stack, limited: httpx.AsyncClient
) -> None:
    tenant = unique_tenant()
    headers = stack.auth("issuer", tenant)
    await start_of_a_minute()
    hashes = ["0x" + uuid.uuid4().hex * 2 for _ in range(3)]
    answers: list[Any] = []
    for n in range(3):
        answers.append(
            await limited.post(
                f"/api/v1/credentials/limit-{n}/anchor",
                json={"data_hash": hashes[n], "ipfs_cid": CID},
                headers=headers,
            )
        )
    assert [a.status_code for a in answers] == [202, 202, 429]
    assert answers[2].json()["error"]["field"] == "credential_id"
    assert "Retry-After" in answers[2].headers
    # a repeat of an accepted request starts nothing new: it is answered, not limited
    again = await limited.post(
        "/api/v1/credentials/limit-0/anchor",
        json={"data_hash": hashes[0], "ipfs_cid": CID},
        headers=headers,
    )
    assert again.status_code == 202
    async with stack.sessions() as session:
        recorded = await session.scalar(
            select(func.count())
            .select_from(CredentialAnchorRecord)
            .where(CredentialAnchorRecord.tenant == tenant)
        )
    assert recorded == 2
