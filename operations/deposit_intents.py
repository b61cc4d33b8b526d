"""On-chain USDC deposit intents: an address of its own, an amount, an expiry. Create one (its
row, the chain's scanner, its watch), get it, and credit a late transfer to it.

``POST /api/v1/deposit/intent/create``, ``GET /api/v1/deposit/intent/{id}``,
``POST .../{id}/credit-late`` (:mod:`api.routers.intents`) and ``POST /api/v1/jobs`` type
``deposit_intent`` call these."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from api import abuse
from api.auth import Principal
from api.job_options import start_kwargs
from api.public_keys import deposit_wallet
from api.workflow_starts import nothing_started
from domain.deposit_watch import (
    CREDITABLE_LATE,
    ChainScannerInput,
    DepositWatchInput,
    DepositWatchState,
    LateCreditInput,
    ScannerConfig,
    TransferSeen,
    TransferStatus,
    WatchConfig,
)
from domain.errors import Conflict, EvmError, InvalidInput, NotFound, ServiceUnavailable
from domain.money import Currency, format_minor, to_minor
from domain.queues import workflow_queue
from domain.search import OperationKind, start_attributes
from operations.context import Context
from operations.deposit_intents_models import (
    CreateIntent,
    IntentView,
    LateCreditView,
    TransferView,
)
from providers.evm import EvmClient
from runtime.logging import get_logger
from runtime.settings import Settings
from runtime.temporal import temporal_unreachable
from store import abuse as abuse_counters
from store import accounts, intents
from store.models import DepositIntent, DepositTransfer, User
from workflows import chain_scanner, deposit_watch

log = get_logger("api.intents")

AMOUNT = re.compile(r"^\d{1,12}(\.\d{1,6})?$")
SCANNER_RECHECK_SECONDS = 60.0


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def watch_config(settings: Settings) -> WatchConfig:
    return WatchConfig(
        confirmations=settings.evm_confirmations,
        use_safe_tag=settings.evm_use_safe_tag,
        max_checks=settings.deposit_watch_max_checks,
        fallback_interval_seconds=settings.deposit_watch_fallback_seconds,
        healthy_fallback_interval_seconds=settings.deposit_watch_healthy_fallback_seconds,
        block_time_seconds=settings.evm_block_time_seconds,
        scanner_stale_after_seconds=settings.chain_scanner_stale_after_seconds,
        min_amount_minor=min_amount_minor(settings),
    )


def min_amount_minor(settings: Settings) -> int:
    """``DEPOSIT_MIN_AMOUNT`` in USDC base units; never below 1, so zero is always ignored."""
    return max(1, to_minor(settings.deposit_min_amount, Currency.USDC))


def scanner_input(settings: Settings) -> ChainScannerInput:
    return ChainScannerInput(
        chain=settings.evm_chain,
        chain_id=settings.evm_chain_id,
        usdc_address=settings.usdc_contract_address,
        task_queue_prefix=settings.task_queue_prefix,
        config=ScannerConfig(
            interval_seconds=settings.chain_scanner_interval_seconds,
            max_range=settings.evm_getlogs_max_range,
            reorg_window=settings.chain_scanner_reorg_window,
            rounds_per_run=settings.chain_scanner_rounds_per_run,
            min_amount_minor=min_amount_minor(settings),
        ),
    )


async def ensure_scanner(client: Client, settings: Settings) -> None:
    """Start the chain's scanner unless it runs (it continues as new, so it never ends)."""
    try:
        await client.start_workflow(
            chain_scanner.ChainScanner.run,
            scanner_input(settings),
            id=scanner_id(settings),
            task_queue=workflow_queue(settings.task_queue_prefix),
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=start_attributes(OperationKind.CHAIN_SCANNER, "system", "system"),
        )
    except WorkflowAlreadyStartedError:
        return


def parse_amount(value: str, settings: Settings) -> int:
    if not AMOUNT.match(value):
        raise InvalidInput(
            "amount must be a decimal string with at most 6 decimal places", field="amount"
        )
    minor = to_minor(value, Currency.USDC)
    low, high = (
        to_minor(settings.deposit_intent_min_usdc, Currency.USDC),
        to_minor(settings.deposit_intent_max_usdc, Currency.USDC),
    )
    if not low <= minor <= high:
        raise InvalidInput(
            f"amount must be between {settings.deposit_intent_min_usdc} and "
            f"{settings.deposit_intent_max_usdc} USDC",
            field="amount",
        )
    return minor


async def _create_row(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    principal: Principal,
    amount_minor: int,
    expires_at: datetime,
) -> tuple[DepositIntent, str, bool]:
    """The intent's row, its user's id, and whether the chain scanner's checkpoint is fresh."""
    intent_id = str(uuid.uuid4())
    async with sessions.begin() as session:
        user = await accounts.get_or_create_user(session, principal.tenant, principal.subject)
        index = await intents.allocate_hd_index(session, settings.evm_chain)
        # counters last, as in every route: one lock order (user row, then counters)
        await abuse_counters.take(session, abuse.deposit_intent(settings, principal))
        address = deposit_wallet(settings).address(index)
        intent = DepositIntent(
            id=intent_id,
            tenant=principal.tenant,
            user_id=user.id,
            chain=settings.evm_chain,
            address=address,
            hd_index=index,
            amount_minor=amount_minor,
            received_minor=0,
            status="open",
            workflow_id=deposit_watch.workflow_id_for(intent_id),
            expires_at=expires_at,
        )
        session.add(intent)
        # a fresh scanner signals the watch: its own first look can wait the longer interval
        checkpoint = await intents.checkpoint(session, settings.evm_chain)
        scanner_fresh = intents.fresh(checkpoint, settings.chain_scanner_stale_after_seconds)
    return intent, user.id, scanner_fresh


def scanner_id(settings: Settings) -> str:
    return chain_scanner.workflow_id_for(settings.evm_chain, settings.task_queue_prefix)


async def _remove(sessions: async_sessionmaker[AsyncSession], intent_id: str) -> None:
    async with sessions.begin() as session:
        row = await session.get(DepositIntent, intent_id)
        if row is not None:
            await session.delete(row)


async def create_and_watch(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    temporal: Client,
    evm: EvmClient,
    principal: Principal,
    amount_minor: int,
    *,
    ttl: timedelta | None = None,
    config: WatchConfig | None = None,
    ensure: bool = True,
) -> str:
    """Allocate an address, store the intent, make sure the scanner runs and start the watch.

    If the watch cannot be started the intent row is removed again: no intent without a watch
    (its HD index stays used, so an address is never handed out twice).
    """
    try:
        await evm.ensure_chain()
        start_block = await evm.block_number()
    except EvmError as exc:
        raise ServiceUnavailable(
            f"the {settings.evm_chain} RPC is not answering; nothing was created"
        ) from exc
    expires_at = datetime.now(UTC) + (ttl or timedelta(minutes=settings.deposit_intent_ttl_minutes))
    intent, user_id, scanner_fresh = await _create_row(
        sessions, settings, principal, amount_minor, expires_at
    )
    try:
        if ensure:
            await ensure_scanner(temporal, settings)
    except (RPCError, RuntimeError) as exc:
        if await nothing_started(temporal, scanner_id(settings), exc, retry=None):
            await _remove(sessions, intent.id)
            raise ServiceUnavailable(
                "the workflow service is unavailable; nothing was created"
            ) from exc
        # the scanner may run: its start is sent again by the next intent; the watch goes on
    start_watch = partial(
        temporal.start_workflow,
        deposit_watch.DepositWatch.run,
        DepositWatchInput(
            intent_id=intent.id,
            tenant=principal.tenant,
            user_id=user_id,
            subject=principal.subject,
            chain=settings.evm_chain,
            chain_id=settings.evm_chain_id,
            address=intent.address,
            amount_minor=amount_minor,
            expires_at=expires_at,
            start_block=start_block,
            config=config or watch_config(settings),
            scanner_fresh=scanner_fresh,
            task_queue_prefix=settings.task_queue_prefix,
        ),
        id=intent.workflow_id,
        task_queue=workflow_queue(settings.task_queue_prefix),
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=start_attributes(
            OperationKind.DEPOSIT_WATCH, principal.tenant, principal.subject
        ),
        **start_kwargs(),
    )
    try:
        await start_watch()
    except (RPCError, RuntimeError) as exc:
        if await nothing_started(temporal, intent.workflow_id, exc, retry=start_watch):
            await _remove(sessions, intent.id)
            raise ServiceUnavailable(
                "the workflow service is unavailable; nothing was created"
            ) from exc
        # else the watch may have started: the intent stays
    log.info(
        "deposit intent created",
        intent_id=intent.id,
        address=intent.address,
        amount_minor=amount_minor,
    )
    return intent.id


async def start(ctx: Context, principal: Principal, body: CreateIntent) -> IntentView:
    """A deposit address of the caller's own for ``amount`` USDC, watched until it expires."""
    settings = ctx.settings
    amount_minor = parse_amount(body.amount, settings)
    if body.chain != settings.evm_chain:
        raise InvalidInput(f"chain must be {settings.evm_chain!r}", field="chain")
    # the scanner is started once and then checked again at most once a minute, not per request
    now = time.monotonic()
    last = ctx.state.scanner_ensured_at
    ensure = last is None or now - last > SCANNER_RECHECK_SECONDS
    intent_id = await create_and_watch(
        settings, ctx.sessions, ctx.temporal, ctx.state.evm, principal, amount_minor, ensure=ensure
    )
    if ensure:
        ctx.state.scanner_ensured_at = now
    return await _view(ctx.reads, ctx.temporal, intent_id, principal)


async def get(ctx: Context, principal: Principal, intent_id: str) -> IntentView:
    """An intent of the caller's (or any intent of the tenant, for an admin)."""
    return await _view(ctx.reads, ctx.temporal, intent_id, principal)


async def _view(
    sessions: async_sessionmaker[AsyncSession],
    temporal: Client | None,
    intent_id: str,
    principal: Principal,
) -> IntentView:
    async with sessions() as session:
        # one snapshot for the intent, its owner and its transfers: at READ COMMITTED a credit
        # committing between the reads showed a transfer credited beside a total without it
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        try:
            intent = await intents.get(session, intent_id)
        except NotFound:
            raise NotFound("deposit intent not found") from None
        user_subject = await _subject(session, intent.user_id)
        if intent.tenant != principal.tenant or (
            user_subject != principal.subject and not principal.is_admin
        ):
            raise NotFound("deposit intent not found")
        transfers = await intents.transfers_of(session, intent.id)
    checks, needs_attention, error = None, False, None
    if temporal is not None:
        state = await _live(temporal, intent.workflow_id)
        if state is not None:
            checks, needs_attention, error = state.checks, state.needs_attention, state.error
    return IntentView(
        id=intent.id,
        workflow_id=intent.workflow_id,
        chain=intent.chain,
        address=intent.address,
        amount=format_minor(intent.amount_minor, Currency.USDC),
        amount_minor=intent.amount_minor,
        received=format_minor(intent.received_minor, Currency.USDC),
        received_minor=intent.received_minor,
        status=intent.status,
        late_transfer_seen=intent.late_transfer_seen,
        expires_at=_utc(intent.expires_at),
        created_at=_utc(intent.created_at),
        status_url=f"/api/v1/deposit/intent/{intent.id}",
        transfers=[
            TransferView(
                tx_hash=t.tx_hash,
                log_index=t.log_index,
                block_number=t.block_number,
                from_address=t.from_address,
                amount=format_minor(t.amount_minor, Currency.USDC),
                status=t.status,
            )
            for t in transfers
        ],
        checks=checks,
        needs_attention=needs_attention,
        error=error,
    )


async def _subject(session: AsyncSession, user_id: str) -> str | None:
    user = await session.get(User, user_id)
    return user.subject if user else None


async def _live(client: Client, workflow_id: str) -> DepositWatchState | None:
    try:
        handle = client.get_workflow_handle(workflow_id, result_type=DepositWatchState)
        if (
            await handle.describe(rpc_timeout=timedelta(seconds=2))
        ).status != WorkflowExecutionStatus.RUNNING:
            return None
        state: DepositWatchState = await handle.query(
            deposit_watch.DepositWatch.status, rpc_timeout=timedelta(seconds=2)
        )
        return state
    except (RPCError, RuntimeError) as exc:
        if not temporal_unreachable(exc):
            raise
        return None


async def credit_late(
    ctx: Context,
    principal: Principal,
    intent_id: str,
    tx_hash: str,
    log_index: int,
) -> LateCreditView:
    """Credit a transfer that reached the intent after it closed (or whose credit an operator
    abandoned), once: a ``LateTransferCredit`` job keyed by chain, tx hash and log index checks
    it on chain and credits it under the same ledger key as any credit. A transfer already
    credited is reported as such and nothing starts."""
    settings, temporal = ctx.settings, ctx.temporal
    tx_hash = tx_hash.lower()
    async with ctx.reads() as session:
        try:
            intent = await intents.get(session, intent_id)
        except NotFound:
            raise NotFound("deposit intent not found") from None
        if intent.tenant != principal.tenant:
            raise NotFound("deposit intent not found")
        rows = [
            row
            for row in await intents.transfers_of(session, intent.id)
            if row.tx_hash == tx_hash and row.log_index == log_index
        ]
    workflow_id = deposit_watch.late_credit_workflow_id(intent.id, tx_hash, log_index)
    view = LateCreditView(
        intent_id=intent.id,
        tx_hash=tx_hash,
        log_index=log_index,
        status="crediting",
        workflow_id=workflow_id,
        job_url=f"/api/v1/jobs/{workflow_id}",
    )
    if not rows:
        raise NotFound(f"no transfer {tx_hash}:{log_index} was recorded for this intent")
    if any(row.status == TransferStatus.CREDITED for row in rows):
        return view.model_copy(update={"status": "already_credited"})
    row = _latest(r for r in rows if r.status in CREDITABLE_LATE)
    if row is None:
        statuses = sorted({r.status for r in rows})
        raise Conflict(
            f"transfer {tx_hash}:{log_index} is {', '.join(statuses)}: only a late or an "
            "abandoned transfer is credited this way"
        )
    try:
        await temporal.start_workflow(
            deposit_watch.LateTransferCredit.run,
            LateCreditInput(
                intent_id=intent.id,
                tenant=intent.tenant,
                chain=intent.chain,
                chain_id=settings.evm_chain_id,
                transfer=TransferSeen(
                    tx_hash=row.tx_hash,
                    log_index=row.log_index,
                    block_number=row.block_number,
                    block_hash=row.block_hash,
                    from_address=row.from_address,
                    amount_minor=row.amount_minor,
                ),
                requested_by=principal.subject,
                confirmations=settings.evm_confirmations,
                use_safe_tag=settings.evm_use_safe_tag,
                block_time_seconds=settings.evm_block_time_seconds,
                task_queue_prefix=settings.task_queue_prefix,
            ),
            id=workflow_id,
            task_queue=workflow_queue(settings.task_queue_prefix),
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=start_attributes(
                OperationKind.DEPOSIT_WATCH, intent.tenant, principal.subject
            ),
        )
    except WorkflowAlreadyStartedError:
        raise Conflict(
            f"a late credit of this transfer already ran and ended without crediting it: see "
            f"{view.job_url} (retry it there)"
        ) from None
    except (RPCError, RuntimeError) as exc:
        if not temporal_unreachable(exc):
            raise
        raise ServiceUnavailable(
            "the workflow service is unavailable; nothing was started"
        ) from exc
    log.info(
        "late transfer credit requested",
        intent_id=intent.id,
        tx_hash=tx_hash,
        log_index=log_index,
        by=principal.subject,
    )
    return view


def _latest(rows: Iterable[DepositTransfer]) -> DepositTransfer | None:
    """The most recent sighting (after a reorg the transfer may have been seen in two blocks)."""
    return max(rows, key=lambda r: r.block_number, default=None)
