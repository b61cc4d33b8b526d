"""The wallet writer's records: wallets (nonce owners), transactions and their signed attempts."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import EvmTransaction, EvmTxAttempt, EvmWallet, utcnow

SIGNED = "signed"
BROADCAST = "broadcast"
MINED = "mined"
CONFIRMED = "confirmed"
REVERTED = "reverted"
OPEN = (SIGNED, BROADCAST, MINED)


async def lock_wallet(session: AsyncSession, chain_id: int, address: str) -> EvmWallet:
    """The wallet's row, created if missing, locked for the rest of the transaction (a PostgreSQL
    row lock: one signer per wallet at a time)."""
    query = (
        select(EvmWallet)
        .where(EvmWallet.chain_id == chain_id, EvmWallet.address == address)
        .with_for_update()
    )
    wallet = (await session.execute(query)).scalar_one_or_none()
    if wallet is not None:
        return wallet
    try:
        async with session.begin_nested():
            session.add(EvmWallet(chain_id=chain_id, address=address, next_nonce=None))
            await session.flush()
    except IntegrityError:
        pass
    return (await session.execute(query)).scalar_one()


async def by_key(session: AsyncSession, key: str) -> EvmTransaction | None:
    query = select(EvmTransaction).where(EvmTransaction.idempotency_key == key)
    return (await session.execute(query)).scalar_one_or_none()


async def attempts(session: AsyncSession, transaction_id: str) -> list[EvmTxAttempt]:
    rows = await session.execute(
        select(EvmTxAttempt)
        .where(EvmTxAttempt.transaction_id == transaction_id)
        .order_by(EvmTxAttempt.created_at.desc())
    )
    return list(rows.scalars())


async def latest_attempt(session: AsyncSession, transaction_id: str) -> EvmTxAttempt:
    found = await attempts(session, transaction_id)
    if not found:
        raise LookupError(f"transaction {transaction_id} has no signed attempt")
    return found[0]


async def open_below(session: AsyncSession, wallet_id: str, nonce: int) -> list[EvmTransaction]:
    """Our transactions with a lower nonce that are not mined yet: they block this one."""
    rows = await session.execute(
        select(EvmTransaction)
        .where(
            EvmTransaction.wallet_id == wallet_id,
            EvmTransaction.nonce < nonce,
            EvmTransaction.status.in_((SIGNED, BROADCAST)),
        )
        .order_by(EvmTransaction.nonce)
    )
    return list(rows.scalars())


def mark_broadcast(attempt: EvmTxAttempt, tx: EvmTransaction) -> None:
    attempt.broadcast_at = attempt.broadcast_at or utcnow()
    if tx.status == SIGNED:
        tx.status = BROADCAST
