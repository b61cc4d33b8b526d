"""Credential anchoring's side effects: the registry transaction (through the wallet writer) and
the credential's row. Runs on its own queue (``credentials``), whose server-side rate limit is
``CREDENTIAL_ANCHOR_RATE_PER_SECOND`` (the server dispatches, so it holds for every worker).

At most ``CREDENTIAL_ANCHOR_CONCURRENCY`` submissions run at once across the fleet: each holds a
lease on one of that many rows in PostgreSQL (:mod:`store.leases`) while it submits. A worker's
``max_concurrent_activities`` could not do it (it is per worker: two workers, twice the limit) and
the Temporal server has no concurrency cap of its own. Each worker still takes at most that many
tasks, so the ones waiting for a lease stay few."""

from __future__ import annotations

import json
import os
import socket

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.evm import EvmWriteActivities
from activities.job_log import job_log
from domain.credentials import (
    AnchorOutcome,
    AnchorStatus,
    AnchorSubmitInput,
    BatchMember,
    BatchOutcome,
    PreparedBatch,
    anchor_root_calldata,
)
from domain.evm import SubmittedTx, SubmitTxInput
from domain.merkle import leaf, root_and_proofs
from runtime.logging import get_logger
from store.leases import SlotLimit, fleet_slot
from store.models import CredentialAnchorRecord

log = get_logger("activities.credentials")


class CredentialActivities:
    def __init__(
        self,
        writer: EvmWriteActivities,
        sessions: async_sessionmaker[AsyncSession],
        slots: SlotLimit | None = None,
    ) -> None:
        self._writer, self._sessions, self._slots = writer, sessions, slots

    @activity.defn(name="credentials.submit_anchor")
    async def submit_anchor(self, request: AnchorSubmitInput) -> SubmittedTx:
        """The registry's ``anchor`` call from the treasury, through the wallet writer: one
        idempotency key per credential, so a retry re-broadcasts the same signed transaction.
        Holds one of the fleet's submission slots meanwhile."""
        if self._slots is None:
            return await self._submit(request)
        info = activity.info()
        holder = f"{socket.gethostname()}:{os.getpid()}:{info.workflow_id}:{info.attempt}"
        slots = self._slots
        async with fleet_slot(self._sessions, slots, holder[:200], waiting=activity.heartbeat):
            return await self._submit(request)

    async def _submit(self, request: AnchorSubmitInput) -> SubmittedTx:
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
        sent = f", transaction {outcome.tx_hash}" if outcome.tx_hash else ""
        block = f" in block {outcome.block_number}" if outcome.block_number else ""
        error = f": {outcome.error}" if outcome.error else ""
        await job_log(
            self._sessions,
            f"anchor {outcome.status.value}{sent}{block}{error}",
            level="warning" if outcome.error else "info",
        )

    @activity.defn(name="credentials.prepare_batch")
    async def prepare_batch(self, keys: list[str]) -> PreparedBatch:
        """The Merkle root over the still-pending credentials among ``keys``; each one's proof is
        stored with it now, so the status can show it as soon as the root is anchored."""
        async with self._sessions.begin() as session:
            rows = (
                (
                    await session.execute(
                        select(CredentialAnchorRecord)
                        .where(
                            CredentialAnchorRecord.credential_key.in_(keys),
                            CredentialAnchorRecord.status == AnchorStatus.PENDING.value,
                        )
                        .order_by(CredentialAnchorRecord.credential_key)
                    )
                )
                .scalars()
                .all()
            )
            if not rows:
                return PreparedBatch(root="0x" + "00" * 32, calldata="0x", keys=[])
            leaves = [leaf(r.credential_key, r.data_hash, r.ipfs_cid) for r in rows]
            root, proofs = root_and_proofs(leaves)
            root_hex = "0x" + root.hex()
            for row, proof in zip(rows, proofs, strict=True):
                row.batch_root = root_hex
                row.proof = json.dumps(["0x" + p.hex() for p in proof])
        return PreparedBatch(
            root=root_hex,
            calldata=anchor_root_calldata(root_hex, len(rows)),
            keys=[r.credential_key for r in rows],
        )

    @activity.defn(name="credentials.batch_members")
    async def batch_members(self, keys: list[str]) -> list[BatchMember]:
        """Who each credential of a batch belongs to: its events go to its own tenant."""
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(
                        CredentialAnchorRecord.credential_key,
                        CredentialAnchorRecord.credential_id,
                        CredentialAnchorRecord.tenant,
                    ).where(CredentialAnchorRecord.credential_key.in_(keys))
                )
            ).all()
        by_key = {
            key: BatchMember(credential_key=key, credential_id=cid, tenant=tenant)
            for key, cid, tenant in rows
        }
        return [by_key[key] for key in keys if key in by_key]

    @activity.defn(name="credentials.record_batch")
    async def record_batch(self, outcome: BatchOutcome) -> None:
        async with self._sessions.begin() as session:
            rows = (
                await session.execute(
                    select(CredentialAnchorRecord).where(
                        CredentialAnchorRecord.credential_key.in_(outcome.keys)
                    )
                )
            ).scalars()
            for row in rows:
                row.status = outcome.status.value
                row.tx_hash, row.block_number = outcome.tx_hash, outcome.block_number
                row.error = outcome.error
        log.info(
            "credential batch recorded",
            root=outcome.root,
            count=len(outcome.keys),
            status=outcome.status.value,
            tx_hash=outcome.tx_hash,
        )
        sent = f", transaction {outcome.tx_hash}" if outcome.tx_hash else ""
        error = f": {outcome.error}" if outcome.error else ""
        await job_log(
            self._sessions,
            f"batch root {outcome.root} ({len(outcome.keys)} credentials) "
            f"{outcome.status.value}{sent}{error}",
            level="warning" if outcome.error else "info",
        )
