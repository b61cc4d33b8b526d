"""The double-entry ledger.

An entry is a set of postings that sums to zero in each currency, written once under a unique
idempotency key (source + external reference). Posting the same key again returns the first entry
and changes nothing, so a retried activity can never credit twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import IdempotencyConflict, UnbalancedEntry
from store.models import Account, LedgerEntry, Posting


@dataclass(frozen=True)
class PostingSpec:
    account_id: str
    amount_minor: int
    currency: str


@dataclass(frozen=True)
class PostResult:
    entry: LedgerEntry
    created: bool


def _check_balanced(postings: Sequence[PostingSpec]) -> None:
    if len(postings) < 2:
        raise UnbalancedEntry("an entry needs at least two postings")
    totals: dict[str, int] = defaultdict(int)
    for p in postings:
        if not isinstance(p.amount_minor, int) or isinstance(p.amount_minor, bool):
            raise UnbalancedEntry("posting amounts are integer minor units")
        if p.amount_minor == 0:
            raise UnbalancedEntry("a posting of zero moves nothing")
        totals[p.currency] += p.amount_minor
    unbalanced = {c: t for c, t in totals.items() if t != 0}
    if unbalanced:
        raise UnbalancedEntry(f"postings do not sum to zero: {unbalanced}")


async def _existing(session: AsyncSession, key: str) -> LedgerEntry | None:
    return (
        await session.execute(select(LedgerEntry).where(LedgerEntry.idempotency_key == key))
    ).scalar_one_or_none()


async def _same_postings(
    session: AsyncSession, entry: LedgerEntry, postings: Sequence[PostingSpec]
) -> bool:
    rows = (
        await session.execute(
            select(Posting.account_id, Posting.amount_minor, Posting.currency).where(
                Posting.entry_id == entry.id
            )
        )
    ).all()
    stored = sorted((r.account_id, r.amount_minor, r.currency) for r in rows)
    wanted = sorted((p.account_id, p.amount_minor, p.currency) for p in postings)
    return stored == wanted


async def post_entry(
    session: AsyncSession,
    *,
    idempotency_key: str,
    kind: str,
    postings: Sequence[PostingSpec],
    reference: str | None = None,
    description: str | None = None,
) -> PostResult:
    """Write a balanced entry once. Must run inside the caller's transaction."""
    _check_balanced(postings)
    existing = await _existing(session, idempotency_key)
    if existing is None:
        try:
            async with session.begin_nested():
                entry = LedgerEntry(
                    idempotency_key=idempotency_key,
                    kind=kind,
                    reference=reference,
                    description=description,
                )
                session.add(entry)
                await session.flush()
                session.add_all(
                    Posting(
                        entry_id=entry.id,
                        account_id=p.account_id,
                        amount_minor=p.amount_minor,
                        currency=p.currency,
                    )
                    for p in postings
                )
                for p in postings:
                    await session.execute(
                        update(Account)
                        .where(Account.id == p.account_id)
                        .values(balance_minor=Account.balance_minor + p.amount_minor)
                    )
                await session.flush()
            return PostResult(entry=entry, created=True)
        except IntegrityError:
            # a concurrent writer got the key first: fall through to the replay check
            existing = await _existing(session, idempotency_key)
            if existing is None:
                raise
    if not await _same_postings(session, existing, postings):
        raise IdempotencyConflict(
            f"idempotency key {idempotency_key!r} was already used for different postings"
        )
    return PostResult(entry=existing, created=False)


async def account_balance(session: AsyncSession, account_id: str) -> int:
    """The balance derived from postings (the truth), not the cached column."""
    total = (
        await session.execute(
            select(func.coalesce(func.sum(Posting.amount_minor), 0)).where(
                Posting.account_id == account_id
            )
        )
    ).scalar_one()
    return int(total)


async def totals_by_currency(session: AsyncSession) -> dict[str, int]:
    """Sum of all postings per currency: every value must be zero."""
    rows = (
        await session.execute(
            select(Posting.currency, func.sum(Posting.amount_minor)).group_by(Posting.currency)
        )
    ).all()
    return {currency: int(total) for currency, total in rows}


async def cache_mismatches(session: AsyncSession) -> list[str]:
    """Accounts whose cached balance differs from the sum of their postings."""
    sums = (
        select(Posting.account_id, func.sum(Posting.amount_minor).label("total"))
        .group_by(Posting.account_id)
        .subquery()
    )
    rows = (
        await session.execute(
            select(Account.id, Account.balance_minor, func.coalesce(sums.c.total, 0)).outerjoin(
                sums, sums.c.account_id == Account.id
            )
        )
    ).all()
    return [account_id for account_id, cached, total in rows if int(cached) != int(total)]
