"""Database steps of the deposit watch (queue ``db``)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.job_log import job_log
from domain.deposit_watch import (
    CloseIntentInput,
    CreditTransferInput,
    IntentTotals,
    MarkTransferInput,
)
from runtime.logging import get_logger
from store import intents

log = get_logger("activities.intents")


class IntentActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn(name="intents.credit_transfer")
    async def credit_transfer(self, request: CreditTransferInput) -> IntentTotals:
        """Credit one confirmed transfer, once (ledger key: chain, tx hash, log index)."""
        async with self._sessions.begin() as session:
            totals = await intents.credit_transfer(
                session, request.intent_id, request.chain_id, request.transfer
            )
        log.info(
            "on-chain deposit credited"
            if totals.credited_now
            else "on-chain deposit already credited",
            intent_id=request.intent_id,
            tx_hash=request.transfer.tx_hash,
            amount_minor=request.transfer.amount_minor,
        )
        transfer = request.transfer
        await job_log(
            self._sessions,
            ("credited" if totals.credited_now else "already credited")
            + f": {transfer.amount_minor} USDC base units, transaction {transfer.tx_hash} "
            f"(log {transfer.log_index}, block {transfer.block_number})",
        )
        return totals

    @activity.defn(name="intents.mark_transfer")
    async def mark_transfer(self, request: MarkTransferInput) -> None:
        async with self._sessions.begin() as session:
            await intents.mark_transfer(
                session, request.intent_id, request.transfer, request.status
            )
        await job_log(
            self._sessions,
            f"transfer {request.transfer.tx_hash} (log {request.transfer.log_index}) "
            f"marked {request.status}",
        )

    @activity.defn(name="intents.close")
    async def close(self, request: CloseIntentInput) -> str:
        async with self._sessions.begin() as session:
            intent = await intents.close(session, request.intent_id, request.status)
        await job_log(self._sessions, f"intent closed: {intent.status}")
        return intent.status
