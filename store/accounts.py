"""Users and their ledger accounts, created on first use."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Account, User

USER = "user"
SYSTEM = "system"

PORTFOLIO = "portfolio"
#: what Safaricom holds for us: goes negative as customers' deposits are credited
MPESA_FLOAT = "mpesa_float"
#: KES that was converted to USDC (the FX desk's side of the conversion)
FX_POOL = "fx_pool"
#: the treasury wallet's USDC: goes negative as USDC is sent out to users
TREASURY = "treasury"


async def get_or_create_user(session: AsyncSession, tenant: str, subject: str) -> User:
    query = select(User).where(User.tenant == tenant, User.subject == subject)
    user = (await session.execute(query)).scalar_one_or_none()
    if user is not None:
        return user
    try:
        async with session.begin_nested():
            user = User(tenant=tenant, subject=subject)
            session.add(user)
            await session.flush()
        return user
    except IntegrityError:
        return (await session.execute(query)).scalar_one()


async def get_or_create_account(
    session: AsyncSession,
    *,
    owner_type: str,
    owner_id: str,
    kind: str,
    currency: str,
    tenant: str | None = None,
) -> Account:
    query = select(Account).where(
        Account.owner_type == owner_type,
        Account.owner_id == owner_id,
        Account.kind == kind,
        Account.currency == currency,
    )
    account = (await session.execute(query)).scalar_one_or_none()
    if account is not None:
        return account
    try:
        async with session.begin_nested():
            account = Account(
                owner_type=owner_type,
                owner_id=owner_id,
                kind=kind,
                currency=currency,
                tenant=tenant,
                balance_minor=0,
            )
            session.add(account)
            await session.flush()
        return account
    except IntegrityError:
        return (await session.execute(query)).scalar_one()


async def user_accounts(session: AsyncSession, user_id: str) -> list[Account]:
    rows = await session.execute(
        select(Account)
        .where(Account.owner_type == USER, Account.owner_id == user_id)
        .order_by(Account.kind, Account.currency)
    )
    return list(rows.scalars())
