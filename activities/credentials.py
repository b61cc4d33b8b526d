"""Credential anchoring's side effects: the registry transaction (through the wallet writer) and
the credential's row. Runs on its own queue (``credentials``), whose worker takes at most
``CREDENTIAL_ANCHOR_CONCURRENCY`` at once and whose server-side rate limit is
``CREDENTIAL_ANCHOR_RATE_PER_SECOND``."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.evm import EvmWriteActivities
from domain.credentials import AnchorOutcome, AnchorSubmitInput
from domain.evm import SubmittedTx, SubmitTxInput
from runtime.logging import get_logger
from store.models import CredentialAnchorRecord

log = get_logger("activities.credentials")


class CredentialActivities:
    def __init__(
        self, writer: EvmWriteActivities, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        self._writer, self._sessions = writer, sessions

    @activity.defn(name="credentials.submit_anchor")
    async def submit_anchor(self, request: AnchorSubmitInput) -> SubmittedTx:
        """The registry's ``anchor`` call from the treasury, through the wallet writer: one
        idempotency key per credential, so a retry re-broadcasts the same signed transaction."""
        return await self._writer.submit(
            SubmitTxInput(
                idempotency_key=request.idempotency_key,
                to=request.registry,
                data=request.calldata,
                purpose="credential_anchor",
            )
        )

    @activity.defn(name="credentials.record")
    async def record(self, outcome: AnchorOutcome) -> None:
        async with self._sessions.begin() as session:
            row = await session.get(CredentialAnchorRecord, outcome.credential_key)
            if row is None:
                raise RuntimeError(f"no credential row {outcome.credential_key}")
            row.status = outcome.status.value
            row.tx_hash = outcome.tx_hash or row.tx_hash
            row.block_number = outcome.block_number
            row.error = outcome.error
        log.info(
            "credential anchor recorded",
            credential_key=outcome.credential_key,
            status=outcome.status.value,
            tx_hash=outcome.tx_hash,
        )
