"""Reading the chain for on-chain deposits (queue ``evm-read``).

``chain.scan`` is the only thing that polls: one ``eth_getLogs`` query (split into ranges the node
accepts) for every USDC Transfer since the last checkpoint, matched against all intents at once,
so RPC calls per minute do not grow with the number of open intents. Watches ask
``chain.check_transfers`` only for transfers they already know about, and
``chain.fallback_transfers`` reads the scanner's records. When the scanner's checkpoint is stale
(the scanner down, or starved on a loaded worker) the first watch to notice catches the records up
with the scanner's own query, one at a time per worker, and the watches after it find the
checkpoint fresh again: a stale scanner costs one scan, not one query per watch.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.liveness import keep_alive
from domain.deposit_watch import (
    CheckTransfersInput,
    CheckTransfersResult,
    FallbackInput,
    FallbackResult,
    IntentMatch,
    ScanInput,
    ScanResult,
    TransferCheck,
    TransferSeen,
    TransferStatus,
    qualifies,
)
from providers.evm import EvmClient, LogFilter
from providers.evm.erc20 import TRANSFER_TOPIC, TransferLog, decode_transfer
from runtime.logging import get_logger
from store import intents
from store.db import reads_of
from store.models import DepositTransfer

log = get_logger("activities.chain")


def _seen(transfer: TransferLog) -> TransferSeen:
    return TransferSeen(
        tx_hash=transfer.tx_hash.lower(),
        log_index=transfer.log_index,
        block_number=transfer.block_number,
        block_hash=transfer.block_hash.lower(),
        from_address=transfer.sender,
        amount_minor=transfer.amount,
    )


def _from_row(row: DepositTransfer) -> TransferSeen:
    return TransferSeen(
        tx_hash=row.tx_hash,
        log_index=row.log_index,
        block_number=row.block_number,
        block_hash=row.block_hash,
        from_address=row.from_address,
        amount_minor=row.amount_minor,
    )


def _topic(address: str) -> str:
    return "0x" + address.lower().removeprefix("0x").rjust(64, "0")


class ChainReadActivities:
    def __init__(
        self,
        client: EvmClient,
        sessions: async_sessionmaker[AsyncSession],
        usdc_address: str,
        max_range: int,
        reorg_window: int = 12,
    ) -> None:
        self._client = client
        self._sessions = sessions
        self._reads = reads_of(sessions)
        self._usdc = usdc_address
        self._max_range = max_range
        self._reorg_window = reorg_window
        #: one catch-up scan at a time: the watches waiting behind it find the checkpoint fresh
        self._catching_up = asyncio.Lock()

    @activity.defn(name="chain.scan")
    async def scan(self, request: ScanInput) -> ScanResult:
        """USDC Transfers since the checkpoint (minus the reorg window), matched to intents."""
        # a retry may follow an attempt that recorded its sightings and died before answering:
        # their watches were never signalled, and those sightings may lie behind the window
        # rescanned now, so the retry signals every sighting still waiting (watches ignore one
        # they already hold or credited)
        retry = activity.in_activity() and activity.info().attempt > 1
        async with keep_alive():
            result = await self._scan(request)
            return await self._with_waiting(request, result) if retry else result

    async def _with_waiting(self, request: ScanInput, result: ScanResult) -> ScanResult:
        """``result`` plus a match for every recorded sighting of an open intent still ``seen``."""
        now = datetime.now(UTC)
        matched = {(m.intent_id, m.transfer.key) for m in result.matches}
        again: list[IntentMatch] = []
        async with self._reads() as session:
            for intent, row in await intents.waiting_sightings(session, request.chain):
                seen = _from_row(row)
                if (
                    (intent.id, seen.key) not in matched
                    and intents.is_open(intent, now)
                    and qualifies(seen.amount_minor, request.min_amount_minor)
                ):
                    again.append(
                        IntentMatch(
                            intent_id=intent.id, workflow_id=intent.workflow_id, transfer=seen
                        )
                    )
        if again:
            log.warning(
                "scan retried: signalling recorded transfers again",
                transfers=len(again),
                chain=request.chain,
            )
        return result.model_copy(update={"matches": [*result.matches, *again]})

    async def _scan(self, request: ScanInput) -> ScanResult:
        await self._client.ensure_chain()
        head = await self._client.block_number()
        async with self._reads() as session:
            checkpoint = await intents.checkpoint(session, request.chain)
        last = checkpoint.last_scanned_block if checkpoint else None
        if last is None or last > head:
            if last is not None:
                log.warning(
                    "the chain is behind the checkpoint: rescanning near the head",
                    checkpoint=last,
                    head=head,
                )
            start = max(0, head - request.reorg_window)
        else:
            start = max(0, last + 1 - request.reorg_window)
        logs = await self._client.get_logs_split(
            LogFilter(start, head, request.usdc_address, [TRANSFER_TOPIC]), request.max_range
        )
        transfers = [t for t in (decode_transfer(entry) for entry in logs) if t is not None]
        matches: list[IntentMatch] = []
        late = ignored = 0
        now = datetime.now(UTC)
        async with self._sessions.begin() as session:
            found = await intents.by_addresses(
                session, request.chain, {t.recipient for t in transfers}
            )
            for transfer in transfers:
                intent = found.get(transfer.recipient)
                if intent is None:
                    continue
                seen = _seen(transfer)
                if not qualifies(seen.amount_minor, request.min_amount_minor):
                    # dust or zero (address poisoning): kept for the record, nothing more
                    if await intents.record_transfer(session, intent, seen, TransferStatus.IGNORED):
                        ignored += 1
                elif intents.is_open(intent, now):
                    if await intents.record_transfer(session, intent, seen, TransferStatus.SEEN):
                        matches.append(
                            IntentMatch(
                                intent_id=intent.id, workflow_id=intent.workflow_id, transfer=seen
                            )
                        )
                elif await intents.record_transfer(session, intent, seen, TransferStatus.LATE):
                    intent.late_transfer_seen = True
                    late += 1
                    log.warning(
                        "transfer to a closed deposit intent: recorded, not credited",
                        intent_id=intent.id,
                        tx_hash=seen.tx_hash,
                        amount_minor=seen.amount_minor,
                    )
            await intents.set_checkpoint(session, request.chain, head)
        return ScanResult(
            from_block=start,
            to_block=head,
            logs=len(logs),
            matches=matches,
            late=late,
            ignored=ignored,
        )

    @activity.defn(name="chain.check_transfers")
    async def check_transfers(self, request: CheckTransfersInput) -> CheckTransfersResult:
        """Per transfer: confirmed (enough blocks on top, block still canonical), reorged (its
        block is no longer the one at that height), or pending with the blocks still to come."""
        async with keep_alive():
            return await self._check_transfers(request)

    async def _check_transfers(self, request: CheckTransfersInput) -> CheckTransfersResult:
        await self._client.ensure_chain()
        head = await self._client.block_number()
        final = await self._client.tagged_number("safe") if request.use_safe_tag else None
        checks: list[TransferCheck] = []
        for transfer in request.transfers:
            canonical = await self._client.block_hash(transfer.block_number)
            if canonical is None or canonical.lower() != transfer.block_hash.lower():
                checks.append(TransferCheck(transfer=transfer, outcome="reorged"))
                continue
            if final is not None:
                to_go = max(0, transfer.block_number - final)
            else:
                to_go = max(0, request.confirmations - (head - transfer.block_number + 1))
            outcome = "confirmed" if to_go == 0 else "pending"
            checks.append(TransferCheck(transfer=transfer, outcome=outcome, blocks_to_go=to_go))
        return CheckTransfersResult(checks=checks, head=head)

    @activity.defn(name="chain.fallback_transfers")
    async def fallback_transfers(self, request: FallbackInput) -> FallbackResult:
        """The watch's own look, when no signal came: the scanner's records while its checkpoint
        is fresh (no RPC). When it is stale, the scanner's query once for every watch (see the
        module's docstring); only before the scanner's first round, a query for this address."""
        async with keep_alive():
            return await self._fallback_transfers(request)

    async def _fallback_transfers(self, request: FallbackInput) -> FallbackResult:
        async with self._reads() as session:
            checkpoint = await intents.checkpoint(session, request.chain)
            if intents.fresh(checkpoint, request.stale_after_seconds):
                return FallbackResult(
                    transfers=await self._recorded(session, request),
                    queried_chain=False,
                    scanner_fresh=True,
                )
        if checkpoint is not None and checkpoint.last_scanned_block is not None:
            async with self._catching_up:
                async with self._reads() as session:
                    checkpoint = await intents.checkpoint(session, request.chain)
                    caught_up = intents.fresh(checkpoint, request.stale_after_seconds)
                if not caught_up:
                    result = await self._scan(
                        ScanInput(
                            chain=request.chain,
                            chain_id=self._client.chain_id,
                            usdc_address=self._usdc,
                            max_range=self._max_range,
                            reorg_window=self._reorg_window,
                            min_amount_minor=request.min_amount_minor,
                        )
                    )
                    log.warning(
                        "scanner stale: a watch caught its records up",
                        intent_id=request.intent_id,
                        from_block=result.from_block,
                        to_block=result.to_block,
                        matches=len(result.matches),
                    )
            async with self._reads() as session:
                return FallbackResult(
                    transfers=await self._recorded(session, request), queried_chain=not caught_up
                )
        await self._client.ensure_chain()
        head = await self._client.block_number()
        logs = await self._client.get_logs_split(
            LogFilter(
                request.start_block,
                head,
                self._usdc,
                [TRANSFER_TOPIC, None, _topic(request.address)],
            ),
            self._max_range,
        )
        found = [_seen(t) for t in (decode_transfer(entry) for entry in logs) if t is not None]
        seen = [t for t in found if qualifies(t.amount_minor, request.min_amount_minor)]
        async with self._sessions.begin() as session:
            intent = await intents.get(session, request.intent_id)
            for transfer in found:
                status = TransferStatus.SEEN if transfer in seen else TransferStatus.IGNORED
                await intents.record_transfer(session, intent, transfer, status)
        log.warning(
            "scanner stale: a watch read the chain itself",
            intent_id=request.intent_id,
            found=len(seen),
        )
        return FallbackResult(transfers=seen, queried_chain=True)

    async def _recorded(self, session: AsyncSession, request: FallbackInput) -> list[TransferSeen]:
        """The transfers the scanner (or a catch-up) recorded for this intent, still to handle."""
        return [
            _from_row(row)
            for row in await intents.transfers_of(session, request.intent_id)
            if row.status == TransferStatus.SEEN
            and qualifies(row.amount_minor, request.min_amount_minor)
        ]
