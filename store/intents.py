"""Deposit intents, the transfers seen for them, and the scanner's checkpoint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from domain.deposit_watch import (
    OPEN_STATUSES,
    IntentStatus,
    IntentTotals,
    TransferSeen,
    TransferStatus,
)
from domain.errors import NotFound
from domain.money import Currency
from store import accounts
from store.ledger import PostingSpec, post_entry
from store.models import ChainCheckpoint, DepositIntent, DepositTransfer, utcnow

LEDGER_KIND = "onchain_deposit"
#: the addresses Settle holds for users' deposits: goes negative as deposits are credited
DEPOSIT_ADDRESSES = "deposit_addresses"


def ledger_key(chain_id: int, tx_hash: str, log_index: int) -> str:
    """One credit per transfer, whichever block it ends up in."""
    return f"evm:{chain_id}:{tx_hash.lower()}:{log_index}"


async def _checkpoint(session: AsyncSession, chain: str) -> ChainCheckpoint:
    query = select(ChainCheckpoint).where(ChainCheckpoint.chain == chain).with_for_update()
    row = (await session.execute(query)).scalar_one_or_none()
    if row is not None:
        return row
    try:
        async with session.begin_nested():
            session.add(ChainCheckpoint(chain=chain, next_hd_index=0))
            await session.flush()
    except IntegrityError:
        pass
    return (await session.execute(query)).scalar_one()


async def allocate_hd_index(session: AsyncSession, chain: str) -> int:
    """The next unused BIP-44 index of ``chain``, under the checkpoint row's lock."""
    row = await _checkpoint(session, chain)
    index = row.next_hd_index
    row.next_hd_index = index + 1
    return index


async def checkpoint(session: AsyncSession, chain: str) -> ChainCheckpoint | None:
    return await session.get(ChainCheckpoint, chain)


def fresh(checkpoint: ChainCheckpoint | None, stale_after_seconds: float) -> bool:
    """The scanner finished a round within the last ``stale_after_seconds``."""
    if checkpoint is None or checkpoint.scanned_at is None:
        return False
    scanned_at = checkpoint.scanned_at
    if scanned_at.tzinfo is None:
        scanned_at = scanned_at.replace(tzinfo=UTC)
    return datetime.now(UTC) - scanned_at < timedelta(seconds=stale_after_seconds)


async def set_checkpoint(session: AsyncSession, chain: str, block: int) -> None:
    row = await _checkpoint(session, chain)
    row.last_scanned_block = block
    row.scanned_at = utcnow()


async def get(session: AsyncSession, intent_id: str, *, for_update: bool = False) -> DepositIntent:
    query = select(DepositIntent).where(DepositIntent.id == intent_id)
    if for_update:
        query = query.with_for_update()
    intent = (await session.execute(query)).scalar_one_or_none()
    if intent is None:
        raise NotFound(f"deposit intent {intent_id} not found")
    return intent


async def by_addresses(
    session: AsyncSession, chain: str, addresses: set[str]
) -> dict[str, DepositIntent]:
    if not addresses:
        return {}
    rows = await session.execute(
        select(DepositIntent).where(
            DepositIntent.chain == chain, DepositIntent.address.in_(addresses)
        )
    )
    return {intent.address: intent for intent in rows.scalars()}


async def record_transfer(
    session: AsyncSession, intent: DepositIntent, transfer: TransferSeen, status: TransferStatus
) -> bool:
    """Keep a transfer as seen in its block; False when that exact sighting was known already."""
    try:
        async with session.begin_nested():
            session.add(
                DepositTransfer(
                    intent_id=intent.id,
                    chain=intent.chain,
                    tx_hash=transfer.tx_hash.lower(),
                    log_index=transfer.log_index,
                    block_number=transfer.block_number,
                    block_hash=transfer.block_hash.lower(),
                    from_address=transfer.from_address,
                    amount_minor=transfer.amount_minor,
                    status=status.value,
                )
            )
            await session.flush()
        return True
    except IntegrityError:
        return False


async def waiting_sightings(
    session: AsyncSession, chain: str
) -> list[tuple[DepositIntent, DepositTransfer]]:
    """Transfers recorded as ``seen`` for the chain's open intents: what their watches have not
    taken yet (few: a sighting stays ``seen`` only until it is confirmed or dropped)."""
    rows = await session.execute(
        select(DepositIntent, DepositTransfer)
        .join(DepositTransfer, DepositTransfer.intent_id == DepositIntent.id)
        .where(
            DepositTransfer.chain == chain,
            DepositTransfer.status == TransferStatus.SEEN.value,
            DepositIntent.status.in_([s.value for s in OPEN_STATUSES]),
        )
    )
    return [(intent, transfer) for intent, transfer in rows.tuples()]


async def transfers_of(session: AsyncSession, intent_id: str) -> list[DepositTransfer]:
    rows = await session.execute(
        select(DepositTransfer)
        .where(DepositTransfer.intent_id == intent_id)
        .order_by(DepositTransfer.block_number, DepositTransfer.log_index)
    )
    return list(rows.scalars())


async def _sighting(
    session: AsyncSession, intent: DepositIntent, transfer: TransferSeen
) -> DepositTransfer | None:
    query = select(DepositTransfer).where(
        DepositTransfer.chain == intent.chain,
        DepositTransfer.tx_hash == transfer.tx_hash.lower(),
        DepositTransfer.log_index == transfer.log_index,
        DepositTransfer.block_hash == transfer.block_hash.lower(),
    )
    return (await session.execute(query)).scalar_one_or_none()


async def mark_transfer(
    session: AsyncSession, intent_id: str, transfer: TransferSeen, status: TransferStatus
) -> None:
    intent = await get(session, intent_id)
    row = await _sighting(session, intent, transfer)
    if row is not None and row.status == TransferStatus.CREDITED:
        return  # credited stays credited (a signal that came too late says nothing new)
    if row is None:
        await record_transfer(session, intent, transfer, status)
    else:
        row.status = status.value
    if status is TransferStatus.LATE:
        intent.late_transfer_seen = True


async def credit_transfer(
    session: AsyncSession, intent_id: str, chain_id: int, transfer: TransferSeen
) -> IntentTotals:
    """Credit a confirmed transfer to the intent owner's USDC portfolio, once per transfer."""
    intent = await get(session, intent_id, for_update=True)
    portfolio = await accounts.get_or_create_account(
        session,
        owner_type=accounts.USER,
        owner_id=intent.user_id,
        kind=accounts.PORTFOLIO,
        currency=Currency.USDC,
        tenant=intent.tenant,
    )
    addresses = await accounts.get_or_create_account(
        session,
        owner_type=accounts.SYSTEM,
        owner_id=f"deposits:{intent.chain}",
        kind=DEPOSIT_ADDRESSES,
        currency=Currency.USDC,
    )
    result = await post_entry(
        session,
        idempotency_key=ledger_key(chain_id, transfer.tx_hash, transfer.log_index),
        kind=LEDGER_KIND,
        reference=transfer.tx_hash.lower(),
        description=f'{{"intent_id": "{intent.id}", "block": {transfer.block_number}}}',
        postings=[
            PostingSpec(portfolio.id, transfer.amount_minor, Currency.USDC),
            PostingSpec(addresses.id, -transfer.amount_minor, Currency.USDC),
        ],
    )
    row = await _sighting(session, intent, transfer)
    if row is None:
        await record_transfer(session, intent, transfer, TransferStatus.CREDITED)
        row = await _sighting(session, intent, transfer)
    assert row is not None
    row.status = TransferStatus.CREDITED.value
    row.ledger_entry_id = result.entry.id
    if result.created:
        intent.received_minor += transfer.amount_minor
        if intent.status == IntentStatus.OPEN and intent.received_minor < intent.amount_minor:
            intent.status = IntentStatus.PARTIALLY_PAID.value
    return IntentTotals(
        intent_id=intent.id, received_minor=intent.received_minor, credited_now=result.created
    )


async def close(session: AsyncSession, intent_id: str, status: IntentStatus) -> DepositIntent:
    intent = await get(session, intent_id, for_update=True)
    if intent.status in OPEN_STATUSES:
        intent.status = status.value
        intent.closed_at = utcnow()
    return intent


def is_open(intent: DepositIntent, now: datetime) -> bool:
    expires = (
        intent.expires_at
        if intent.expires_at.tzinfo
        else intent.expires_at.replace(tzinfo=now.tzinfo)
    )
    return intent.status in OPEN_STATUSES and expires > now
