"""The double-entry ledger on PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.errors import IdempotencyConflict, UnbalancedEntry
from store import accounts
from store.ledger import PostingSpec, account_balance, post_entry
from tests.fixtures.databases import assert_ledger_balanced


async def two_accounts(sessions: async_sessionmaker[AsyncSession]) -> tuple[str, str]:
    owner = uuid.uuid4().hex
    async with sessions.begin() as session:
        user = await accounts.get_or_create_account(
            session, owner_type="user", owner_id=owner, kind="portfolio", currency="KES"
        )
        system = await accounts.get_or_create_account(
            session,
            owner_type="system",
            owner_id=f"float-{owner}",
            kind="mpesa_float",
            currency="KES",
        )
        return user.id, system.id


async def test_replaying_a_key_is_a_no_op(sessions) -> None:
    user, system = await two_accounts(sessions)
    legs = [PostingSpec(user, 500, "KES"), PostingSpec(system, -500, "KES")]
    key = f"test:{uuid.uuid4()}"
    async with sessions.begin() as session:
        first = await post_entry(session, idempotency_key=key, kind="test", postings=legs)
    async with sessions.begin() as session:
        again = await post_entry(session, idempotency_key=key, kind="test", postings=legs)
    assert first.created and not again.created
    assert first.entry.id == again.entry.id
    async with sessions() as session:
        assert await account_balance(session, user) == 500
    await assert_ledger_balanced(sessions)


async def test_same_key_with_other_postings_is_a_conflict(sessions) -> None:
    user, system = await two_accounts(sessions)
    key = f"test:{uuid.uuid4()}"
    async with sessions.begin() as session:
        await post_entry(
            session,
            idempotency_key=key,
            kind="test",
            postings=[PostingSpec(user, 1, "KES"), PostingSpec(system, -1, "KES")],
        )
    with pytest.raises(IdempotencyConflict):
        async with sessions.begin() as session:
            await post_entry(
                session,
                idempotency_key=key,
                kind="test",
                postings=[PostingSpec(user, 2, "KES"), PostingSpec(system, -2, "KES")],
            )


@pytest.mark.parametrize(
    "legs",
    [
        [("u", 100), ("s", -99)],
        [("u", 100)],
        [("u", 0), ("s", 0)],
    ],
)
async def test_unbalanced_entries_are_refused_and_write_nothing(sessions, legs) -> None:
    user, system = await two_accounts(sessions)
    ids = {"u": user, "s": system}
    with pytest.raises(UnbalancedEntry):
        async with sessions.begin() as session:
            await post_entry(
                session,
                idempotency_key=f"test:{uuid.uuid4()}",
                kind="test",
                postings=[PostingSpec(ids[a], amount, "KES") for a, amount in legs],
            )
    async with sessions() as session:
        assert await account_balance(session, user) == 0


async def test_concurrent_writers_of_one_key_make_one_entry(sessions) -> None:
    user, system = await two_accounts(sessions)
    key = f"test:{uuid.uuid4()}"
    legs = [PostingSpec(user, 700, "KES"), PostingSpec(system, -700, "KES")]

    async def write() -> bool:
        async with sessions.begin() as session:
            return (
                await post_entry(session, idempotency_key=key, kind="test", postings=legs)
            ).created

    created = await asyncio.gather(*(write() for _ in range(8)))
    assert sum(created) == 1
    async with sessions() as session:
        assert await account_balance(session, user) == 700
    await assert_ledger_balanced(sessions)
