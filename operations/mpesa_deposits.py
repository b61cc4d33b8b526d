"""M-Pesa deposits: start one (an STK prompt, then USDC to a wallet), get it, and hand it what
Daraja reports (the STK callback, a Transaction Status result).

``POST /api/v1/deposit/initiate``, ``GET /api/v1/deposit/{id}``, the Daraja callback routes
(:mod:`api.routers.deposits`) and ``POST /api/v1/jobs`` type ``mpesa_deposit`` call these."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from functools import partial

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api import abuse
from api.auth import Principal
from api.job_options import start_kwargs
from api.workflow_starts import nothing_started
from domain.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable
from domain.fx import FxQuote, kes_to_usdc_minor
from domain.money import Currency, format_minor
from domain.mpesa import (
    FINAL_STATUSES,
    DepositStatus,
    DepositStep,
    MpesaDepositConfig,
    MpesaDepositInput,
    MpesaDepositState,
    StkCallback,
    TransactionStatusResult,
)
from domain.payouts import PayoutBatchConfig
from domain.queues import workflow_queue
from domain.search import OperationKind, start_attributes
from operations.context import Context
from operations.links import web_ui_url
from operations.mpesa_deposits_models import (
    DepositAccepted,
    DepositView,
    InitiateDeposit,
    QuoteView,
    as_utc,
)
from providers.fx import RateProvider
from runtime.logging import get_logger
from runtime.settings import Settings
from runtime.temporal import temporal_unreachable
from store import abuse as abuse_counters
from store import accounts, deposits, unmatched_payments, wallets
from store.models import MpesaDeposit as DepositRow
from store.models import User
from workflows.mpesa_deposit import MpesaDeposit, workflow_id_for

log = get_logger("api.deposits")

#: namespace for deposit ids derived from a caller's Idempotency-Key
IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1f2a8e-5d0b-4a53-9c1e-2b7b1c9d4e10")
#: an unrecognised success callback is offered to open deposits started this recently
LOST_PUSH_WINDOW = timedelta(hours=1)


def deposit_config(settings: Settings) -> MpesaDepositConfig:
    return MpesaDepositConfig(
        callback_wait_seconds=settings.mpesa_callback_wait_seconds,
        query_interval_seconds=settings.mpesa_query_interval_seconds,
        query_max_attempts=settings.mpesa_query_max_attempts,
        stk_push_max_attempts=settings.mpesa_stk_push_max_attempts,
        stk_push_initial_interval_seconds=settings.mpesa_stk_push_initial_interval_seconds,
        provider_timeout_seconds=settings.daraja_timeout_seconds * 2,
        credit_max_attempts=settings.mpesa_credit_max_attempts,
        credit_initial_interval_seconds=settings.mpesa_credit_initial_interval_seconds,
        confirmations=settings.evm_confirmations,
        use_safe_tag=settings.evm_use_safe_tag,
        confirmation_timeout_seconds=settings.evm_confirmation_timeout_seconds,
        evm_heartbeat_timeout_seconds=settings.evm_heartbeat_timeout_seconds,
        push_resolve_seconds=settings.mpesa_push_resolve_seconds,
        transaction_status_wait_seconds=settings.mpesa_transaction_status_wait_seconds,
        transaction_status_max_attempts=settings.mpesa_transaction_status_max_attempts,
        fx_quote_ttl_seconds=settings.fx_quote_ttl_seconds,
        fx_max_deviation_percent=str(settings.fx_max_deviation_percent),
        treasury_short_max_wait_seconds=settings.treasury_short_max_wait_seconds,
        treasury_short_initial_interval_seconds=settings.treasury_short_initial_interval_seconds,
        treasury_short_max_interval_seconds=settings.treasury_short_max_interval_seconds,
        payout_batch=payout_batch_config(settings) if settings.payout_batch_enabled else None,
    )


def payout_batch_config(settings: Settings) -> PayoutBatchConfig:
    return PayoutBatchConfig(
        disperse_address=settings.payout_disperse_address,
        usdc_address=settings.usdc_contract_address,
        max_size=settings.payout_batch_max,
        max_wait_seconds=settings.payout_batch_wait_seconds,
        confirmations=settings.evm_confirmations,
        use_safe_tag=settings.evm_use_safe_tag,
        confirmation_timeout_seconds=settings.evm_confirmation_timeout_seconds,
        evm_heartbeat_timeout_seconds=settings.evm_heartbeat_timeout_seconds,
        provider_timeout_seconds=settings.daraja_timeout_seconds * 2,
    )


async def take_quote(rates: RateProvider, settings: Settings, amount_minor: int) -> FxQuote:
    """The rate now, fixed for this deposit until FX_QUOTE_TTL_SECONDS from now."""
    try:
        rate = await rates.kes_per_usdc()
    except Exception as exc:  # any rate source failure: nothing is started
        log.warning("no FX rate for a new deposit", error=str(exc))
        raise ServiceUnavailable("no FX rate is available; nothing was started") from exc
    now = datetime.now(UTC)
    return FxQuote(
        amount_kes_minor=amount_minor,
        usdc_minor=kes_to_usdc_minor(amount_minor, rate),
        kes_per_usdc=str(rate),
        source=rates.name,
        quoted_at=now,
        expires_at=now + timedelta(seconds=settings.fx_quote_ttl_seconds),
    )


def stored_quote(row: DepositRow) -> FxQuote | None:
    if (
        row.fx_quote_kes_per_usdc is None
        or row.fx_quote_usdc_minor is None
        or row.fx_quote_expires_at is None
    ):
        return None
    return FxQuote(
        amount_kes_minor=row.amount_minor,
        usdc_minor=row.fx_quote_usdc_minor,
        kes_per_usdc=row.fx_quote_kes_per_usdc,
        source="quote",
        quoted_at=as_utc(row.created_at),
        expires_at=as_utc(row.fx_quote_expires_at),
    )


def _deposit_id(principal: Principal, idempotency_key: str | None) -> str:
    if not idempotency_key:
        return str(uuid.uuid4())
    return str(
        uuid.uuid5(
            IDEMPOTENCY_NAMESPACE, f"{principal.tenant}\x00{principal.subject}\x00{idempotency_key}"
        )
    )


async def _start(
    client: Client, settings: Settings, request: MpesaDepositInput, principal: Principal
) -> None:
    try:
        await client.start_workflow(
            MpesaDeposit.run,
            request,
            id=workflow_id_for(request.deposit_id),
            task_queue=workflow_queue(settings.task_queue_prefix),
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            # a finished deposit is never started again under the same id
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=start_attributes(
                OperationKind.MPESA_DEPOSIT, principal.tenant, principal.subject
            ),
            **start_kwargs(),
        )
    except WorkflowAlreadyStartedError:
        return


async def start(
    ctx: Context,
    principal: Principal,
    body: InitiateDeposit,
    idempotency_key: str | None = None,
) -> DepositAccepted:
    """Start an M-Pesa deposit: the customer's phone gets an STK prompt for ``amount`` KES.

    The same ``idempotency_key`` (per tenant and subject) returns the same deposit; used for a
    different deposit it is a :class:`~domain.errors.Conflict`. When no workflow started, the
    new row is removed again and the answer is :class:`~domain.errors.ServiceUnavailable`."""
    settings, sessions, temporal = ctx.settings, ctx.sessions, ctx.temporal
    if not settings.mpesa_min_amount_kes <= body.amount <= settings.mpesa_max_amount_kes:
        raise InvalidInput(
            f"amount must be between {settings.mpesa_min_amount_kes} and "
            f"{settings.mpesa_max_amount_kes} KES",
            field="amount",
        )
    amount_minor = body.amount * 100
    quote = await take_quote(ctx.state.rates, settings, amount_minor)
    deposit_id = _deposit_id(principal, idempotency_key)
    workflow_id = workflow_id_for(deposit_id)
    created = False
    async with sessions.begin() as session:
        user = await accounts.get_or_create_user(session, principal.tenant, principal.subject)
        wallet_address = body.wallet_address
        if wallet_address is None:
            registered = await wallets.wallet_for(session, user.id, settings.evm_chain)
            if registered is None:
                # nothing is written: this transaction is rolled back by the error
                raise InvalidInput(
                    f"no wallet_address given and none registered on {settings.evm_chain}: pass "
                    f"wallet_address or PUT /api/v1/wallets/{settings.evm_chain} first",
                    field="wallet_address",
                )
            wallet_address = registered.address
        existing = await deposits.find(session, deposit_id)
        if existing is not None:
            if (existing.phone, existing.amount_minor, existing.wallet_address) != (
                body.phone,
                amount_minor,
                wallet_address,
            ):
                raise Conflict(
                    "Idempotency-Key was already used for a different deposit",
                    field="Idempotency-Key",
                )
            quote = stored_quote(existing) or quote
        else:
            await abuse_counters.take(session, abuse.stk_push(settings, principal, body.phone))
            session.add(
                DepositRow(
                    id=deposit_id,
                    tenant=principal.tenant,
                    user_id=user.id,
                    phone=body.phone,
                    amount_minor=amount_minor,
                    currency=Currency.KES.value,
                    status=DepositStatus.INITIATED.value,
                    workflow_id=workflow_id,
                    request_key=idempotency_key,
                    wallet_address=wallet_address,
                    fx_quote_kes_per_usdc=quote.kes_per_usdc,
                    fx_quote_usdc_minor=quote.usdc_minor,
                    fx_quote_expires_at=quote.expires_at,
                    created_at=quote.quoted_at,
                )
            )
            created = True
    request = MpesaDepositInput(
        deposit_id=deposit_id,
        tenant=principal.tenant,
        user_id=user.id,
        subject=principal.subject,
        phone=body.phone,
        amount_minor=amount_minor,
        account_reference=settings.mpesa_account_reference,
        config=deposit_config(settings),
        task_queue_prefix=settings.task_queue_prefix,
        wallet_address=wallet_address,
        quote=quote,
    )
    try:
        await _start(temporal, settings, request, principal)
    except (RPCError, RuntimeError) as exc:
        retry = partial(_start, temporal, settings, request, principal)
        if await nothing_started(temporal, workflow_id, exc, retry=retry):
            if created:  # no workflow, so no row either: the caller can simply try again
                async with sessions.begin() as session:
                    row = await deposits.find(session, deposit_id)
                    if row is not None:
                        await session.delete(row)
            log.warning("could not start deposit workflow", deposit_id=deposit_id, error=str(exc))
            raise ServiceUnavailable(
                "the workflow service is unavailable; nothing was started"
            ) from exc
        # else it may have started: the row stays, and the answer is 202
    if created:
        ctx.metrics.deposits_initiated.inc()
        log.info(
            "deposit initiated",
            deposit_id=deposit_id,
            tenant=principal.tenant,
            amount_kes=body.amount,
        )
    return DepositAccepted(
        id=deposit_id,
        workflow_id=workflow_id,
        status=existing.status if existing is not None else DepositStatus.INITIATED.value,
        status_url=f"/api/v1/deposit/{deposit_id}",
        web_ui_url=web_ui_url(settings, workflow_id),
        quote=QuoteView.of(quote),
    )


async def _live_state(client: Client, workflow_id: str) -> MpesaDepositState | None:
    """The workflow's own view, when it is running and Temporal answers quickly."""
    try:
        handle = client.get_workflow_handle(workflow_id)
        description = await handle.describe(rpc_timeout=timedelta(seconds=2))
        if description.status != WorkflowExecutionStatus.RUNNING:
            return None
        state: MpesaDepositState = await handle.query(
            MpesaDeposit.status, rpc_timeout=timedelta(seconds=2)
        )
        return state
    except (RPCError, RuntimeError) as exc:
        if not temporal_unreachable(exc):
            raise
        return None


async def get(ctx: Context, principal: Principal, deposit_id: str) -> DepositView:
    """A deposit of the caller's (or any deposit of the tenant, for an admin)."""
    async with ctx.reads() as session:
        row = (
            await session.execute(
                select(DepositRow, User.subject)
                .join(User, User.id == DepositRow.user_id)
                .where(DepositRow.id == deposit_id)
            )
        ).one_or_none()
    if row is None:
        raise NotFound("deposit not found")
    deposit, subject = row
    if deposit.tenant != principal.tenant or (
        subject != principal.subject and not principal.is_admin
    ):
        raise NotFound("deposit not found")
    live = await _live_state(ctx.temporal, deposit.workflow_id)
    status = deposit.status
    step = DepositStep.DONE.value if deposit.status in FINAL_STATUSES else None
    error = None
    if live is not None:
        step = live.step.value
        error = live.error
        # the DB row is written after each step; the live state can be a step ahead
        if deposit.status not in (DepositStatus.CREDITED, DepositStatus.FAILED):
            status = live.status.value
    return DepositView(
        id=deposit.id,
        workflow_id=deposit.workflow_id,
        status=status,
        step=step,
        phone=deposit.phone,
        amount=format_minor(deposit.amount_minor, Currency.KES),
        amount_minor=deposit.amount_minor,
        currency=deposit.currency,
        checkout_request_id=deposit.checkout_request_id,
        receipt=deposit.mpesa_receipt,
        result_code=deposit.result_code,
        result_desc=deposit.result_desc,
        failure_reason=deposit.failure_reason,
        error=error,
        wallet_address=deposit.wallet_address,
        usdc_amount=format_minor(deposit.usdc_minor, Currency.USDC)
        if deposit.usdc_minor is not None
        else None,
        usdc_minor=deposit.usdc_minor,
        fx_kes_per_usdc=deposit.fx_kes_per_usdc,
        usdc_tx_hash=(live.usdc_tx_hash if live and live.usdc_tx_hash else deposit.usdc_tx_hash),
        quote=QuoteView.of(q) if (q := stored_quote(deposit)) else None,
        created_at=as_utc(deposit.created_at),
        updated_at=as_utc(deposit.updated_at),
        web_ui_url=web_ui_url(ctx.settings, deposit.workflow_id),
    )


async def accept_callback(ctx: Context, callback: StkCallback, source: str | None) -> None:
    """Keep a Daraja STK callback (already checked and parsed) and signal its deposit's workflow.

    Returns once the signal is durable in Temporal. Duplicates are no-ops (the workflow keeps
    the first). A callback for a CheckoutRequestID not yet recorded is kept, and the workflow's
    recorder hands it over: the callback is kept and looked up under the CheckoutRequestID's
    lock, which the recorder takes too, so exactly one of the two delivers it
    (:func:`store.deposits.record_stk_push`). A success nobody recorded is an unmatched payment:
    offered to the deposit whose push attempt it answers, else open for an admin with an alert.
    """
    metrics = ctx.metrics
    async with ctx.sessions.begin() as session:
        routing = await deposits.accept_callback(
            session,
            callback,
            source,
            since=datetime.now(UTC) - LOST_PUSH_WINDOW,
            match_seconds=ctx.settings.mpesa_push_match_seconds,
        )
    if routing.unmatched is not None:
        metrics.mpesa_callbacks.labels("unmatched").inc()
    if routing.deposit is not None:
        delivered = await _signal(ctx.temporal, routing.deposit, callback)
        if routing.unmatched is None:
            metrics.mpesa_callbacks.labels("accepted" if routing.first else "duplicate").inc()
        if not delivered and callback.result_code == 0:
            await _closed_deposit_paid(ctx.sessions, routing.deposit, callback)
    elif routing.unmatched is None:
        metrics.mpesa_callbacks.labels("unmatched").inc()
        log.warning(
            "failure callback for an unknown CheckoutRequestID kept (nothing was paid)",
            checkout_request_id=callback.checkout_request_id,
            result_code=callback.result_code,
        )


async def _closed_deposit_paid(
    sessions: async_sessionmaker[AsyncSession], deposit: DepositRow, callback: StkCallback
) -> None:
    """A success for a deposit whose workflow has ended: credited with this receipt is a late
    duplicate; anything else is an unmatched payment for an admin, with an alert."""
    async with sessions.begin() as session:
        row = await deposits.get(session, deposit.id)
        if row.ledger_entry_id is not None and (
            row.mpesa_receipt == callback.receipt
            or row.checkout_request_id == callback.checkout_request_id
        ):
            return
        await unmatched_payments.keep(
            session,
            callback,
            deposit=row,
            offered=False,
            reason=f"it came after deposit {row.id} had ended ({row.status})",
        )


async def accept_status_result(
    ctx: Context, deposit_id: str, result: TransactionStatusResult
) -> None:
    """Hand a Transaction Status result (already checked and parsed) to its deposit's workflow
    (signal ``mpesa_transaction_status``); the workflow uses a result only if its ConversationID
    is the one Daraja gave its own query."""
    async with ctx.reads() as session:
        deposit = await deposits.find(session, deposit_id)
    if deposit is None:
        raise NotFound("deposit not found", field="deposit_id")
    await _signal_status(ctx.temporal, deposit, result)
    ctx.metrics.mpesa_callbacks.labels("status_result").inc()


async def _signal_status(
    client: Client, deposit: DepositRow, result: TransactionStatusResult
) -> None:
    handle = client.get_workflow_handle(deposit.workflow_id)
    try:
        await handle.signal(MpesaDeposit.mpesa_transaction_status, result)
    except (RPCError, RuntimeError) as exc:
        if not temporal_unreachable(exc):
            raise
        if isinstance(exc, RPCError) and exc.status == RPCStatusCode.NOT_FOUND:
            return  # the deposit has ended: nothing waits for this result
        raise ServiceUnavailable("could not hand the result to its workflow; not accepted") from exc


async def _signal(client: Client, deposit: DepositRow, callback: StkCallback) -> bool:
    """Hand the callback to its deposit's workflow; False when that workflow has ended."""
    handle = client.get_workflow_handle(deposit.workflow_id)
    try:
        await handle.signal(MpesaDeposit.mpesa_callback, callback)
        return True
    except (RPCError, RuntimeError) as exc:
        if not temporal_unreachable(exc):
            raise
        if isinstance(exc, RPCError) and exc.status == RPCStatusCode.NOT_FOUND:
            if callback.result_code == 0:
                log.error(
                    "successful M-Pesa callback for a closed deposit",
                    deposit_id=deposit.id,
                    receipt=callback.receipt,
                    status=deposit.status,
                )
            return False
        raise ServiceUnavailable(
            "could not hand the callback to its workflow; not accepted"
        ) from exc
