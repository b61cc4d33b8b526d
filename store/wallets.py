"""Users' registered wallets: one per user and chain."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Wallet


async def wallet_for(session: AsyncSession, user_id: str, chain: str) -> Wallet | None:
    query = select(Wallet).where(Wallet.user_id == user_id, Wallet.chain == chain)
    return (await session.execute(query)).scalars().first()


async def set_wallet(session: AsyncSession, user_id: str, chain: str, address: str) -> Wallet:
    """Register ``address`` as the user's wallet on ``chain``, replacing a previous one."""
    current = await wallet_for(session, user_id, chain)
    if current is not None and current.address == address:
        return current
    await session.execute(delete(Wallet).where(Wallet.user_id == user_id, Wallet.chain == chain))
    wallet = Wallet(user_id=user_id, chain=chain, address=address)
    session.add(wallet)
    await session.flush()
    return wallet


async def wallets_of(session: AsyncSession, user_id: str) -> list[Wallet]:
    rows = await session.execute(
        select(Wallet).where(Wallet.user_id == user_id).order_by(Wallet.chain)
    )
    return list(rows.scalars())
