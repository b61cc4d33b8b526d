"""M-Pesa deposits: initiate, status, and Daraja's callback."""

from __future__ import annotations

import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator
from sqlalchemy import select
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api import abuse
from api.auth import Principal
from api.client_address import client_address, in_networks
from api.deps import (
    CurrentUser,
    MetricsDep,
    ReadSessionsDep,
    SessionFactoryDep,
    SettingsDep,
    TemporalDep,
)
from api.errors import error_responses
from api.job_options import start_kwargs
from api.metrics import ApiMetrics
from api.timestamps import UtcDateTime
from api.workflow_starts import nothing_started
from domain.addresses import normalize_evm_address
from domain.errors import (
    BadRequest,
    Conflict,
    DarajaCallbackInvalid,
    Forbidden,
    InvalidInput,
    NotFound,
    ServiceUnavailable,
)
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
from operations.links import web_ui_url
from providers.daraja import parse_stk_callback, parse_transaction_status_result
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
router = APIRouter(prefix="/api/v1/deposit", tags=["mpesa-deposits"])

#: namespace for deposit ids derived from a caller's Idempotency-Key
IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1f2a8e-5d0b-4a53-9c1e-2b7b1c9d4e10")
PHONE_PATTERN = r"^254(7|1)\d{8}$"
#: an unrecognised success callback is offered to open deposits started this recently
LOST_PUSH_WINDOW = timedelta(hours=1)


class InitiateDeposit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: str = Field(
        pattern=PHONE_PATTERN,
        description="Safaricom number in international format, e.g. 254712345678",
        examples=["254708374149"],
    )
    amount: StrictInt = Field(description="whole Kenyan shillings", examples=[150])
    wallet_address: str | None = Field(
        default=None,
        description="EVM address receiving the USDC; defaults to the caller's registered wallet",
        examples=["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"],
    )

    @field_validator("wallet_address")
    @classmethod
    def _evm(cls, value: str | None) -> str | None:
        return normalize_evm_address(value) if value is not None else None


class QuoteView(BaseModel):
    """The KES -> USDC quote fixed at initiation: honoured if M-Pesa confirms the payment before
    ``expires_at``; later the rate of that moment applies only within FX_MAX_DEVIATION_PERCENT
    of this one, else the deposit waits for an operator."""

    kes_per_usdc: str
    usdc_amount: str
    usdc_minor: int
    quoted_at: UtcDateTime
    expires_at: UtcDateTime

    @classmethod
    def of(cls, quote: FxQuote) -> QuoteView:
        assert quote.quoted_at is not None and quote.expires_at is not None
        return cls(
            kes_per_usdc=quote.kes_per_usdc,
            usdc_amount=format_minor(quote.usdc_minor, Currency.USDC),
            usdc_minor=quote.usdc_minor,
            quoted_at=_as_utc(quote.quoted_at),
            expires_at=_as_utc(quote.expires_at),
        )


class DepositAccepted(BaseModel):
    id: str
    workflow_id: str
    status: str
    status_url: str
    web_ui_url: str
    quote: QuoteView | None = None


class DepositView(BaseModel):
    id: str
    workflow_id: str
    status: str
    step: str | None = None
    phone: str
    amount: str
    amount_minor: int
    currency: str
    checkout_request_id: str | None
    receipt: str | None
    result_code: int | None
    result_desc: str | None
    failure_reason: str | None
    error: str | None = None
    wallet_address: str | None = None
    usdc_amount: str | None = None
    usdc_minor: int | None = None
    fx_kes_per_usdc: str | None = None
    usdc_tx_hash: str | None = None
    quote: QuoteView | None = None
    created_at: UtcDateTime
    updated_at: UtcDateTime
    web_ui_url: str


class CallbackAnswer(BaseModel):
    ResultCode: int = 0
    ResultDesc: str = "Accepted"


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
        quoted_at=_as_utc(row.created_at),
        expires_at=_as_utc(row.fx_quote_expires_at),
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


@router.post(
    "/initiate",
    status_code=202,
    response_model=DepositAccepted,
    responses=error_responses(400, 401, 409, 422, 503),
)
async def initiate(
    body: InitiateDeposit,
    http_request: Request,
    principal: CurrentUser,
    settings: SettingsDep,
    sessions: SessionFactoryDep,
    temporal: TemporalDep,
    metrics: MetricsDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=255,
            description="repeat a request safely: the same key returns the same deposit",
        ),
    ] = None,
) -> DepositAccepted:
    """Start an M-Pesa deposit: the customer's phone gets an STK prompt for ``amount`` KES."""
    if not settings.mpesa_min_amount_kes <= body.amount <= settings.mpesa_max_amount_kes:
        raise InvalidInput(
            f"amount must be between {settings.mpesa_min_amount_kes} and "
            f"{settings.mpesa_max_amount_kes} KES",
            field="amount",
        )
    amount_minor = body.amount * 100
    quote = await take_quote(http_request.app.state.rates, settings, amount_minor)
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
        metrics.deposits_initiated.inc()
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


def _as_utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@router.get("/{deposit_id}", response_model=DepositView, responses=error_responses(401, 404))
async def get_deposit(
    deposit_id: str,
    principal: CurrentUser,
    settings: SettingsDep,
    reads: ReadSessionsDep,
    temporal: TemporalDep,
) -> DepositView:
    """A deposit of the caller's (or any deposit of the tenant, for an admin)."""
    async with reads() as session:
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
    live = await _live_state(temporal, deposit.workflow_id)
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
        created_at=_as_utc(deposit.created_at),
        updated_at=_as_utc(deposit.updated_at),
        web_ui_url=web_ui_url(settings, deposit.workflow_id),
    )


def _source_allowed(settings: Settings, host: str | None) -> bool:
    if not settings.mpesa_callback_allowed_ips:
        return True
    return in_networks(host, settings.mpesa_callback_allowed_ips)


def _check_caller(
    token: str, request: Request, settings: Settings, metrics: ApiMetrics
) -> str | None:
    """The URL token, then the source address (TRUSTED_PROXY_IPS may name it); returns it."""
    expected = settings.mpesa_callback_token.get_secret_value()
    if not hmac.compare_digest(token.encode(), expected.encode()):
        metrics.mpesa_callbacks.labels("bad_token").inc()
        raise Forbidden("callback token not recognised")
    source = client_address(request, settings.trusted_proxy_ips)
    if not _source_allowed(settings, source):
        metrics.mpesa_callbacks.labels("ip_refused").inc()
        log.warning("callback from a source outside the allow-list", source=source)
        raise Forbidden("callback source not allowed")
    return source


async def _json_body(request: Request, metrics: ApiMetrics) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except ValueError as exc:
        metrics.mpesa_callbacks.labels("malformed").inc()
        raise BadRequest("callback body is not valid JSON") from exc


@router.post(
    "/mpesa-callback/{token}",
    response_model=CallbackAnswer,
    responses=error_responses(400, 403, 503),
    summary="Daraja STK callback (called by Safaricom, not by users)",
)
async def mpesa_callback(
    token: str,
    request: Request,
    settings: SettingsDep,
    sessions: SessionFactoryDep,
    temporal: TemporalDep,
    metrics: MetricsDep,
) -> CallbackAnswer:
    """Accept a Daraja callback and signal its deposit's workflow.

    Answers ``{"ResultCode": 0, "ResultDesc": "Accepted"}`` only once the signal is durable in
    Temporal. Duplicates are no-ops (the workflow keeps the first). A callback for a
    CheckoutRequestID not yet recorded is kept, and the workflow's recorder hands it over: the
    callback is kept and looked up under the CheckoutRequestID's lock, which the recorder takes
    too, so exactly one of the two delivers it (:func:`store.deposits.record_stk_push`). A
    success nobody recorded is an unmatched payment: offered to the deposit whose push attempt
    it answers, else open for an admin with an alert (``GET .../unmatched-payments``).
    """
    source = _check_caller(token, request, settings, metrics)
    payload = await _json_body(request, metrics)
    try:
        callback = parse_stk_callback(payload)
    except DarajaCallbackInvalid as exc:
        metrics.mpesa_callbacks.labels("malformed").inc()
        raise BadRequest(exc.message) from exc

    async with sessions.begin() as session:
        routing = await deposits.accept_callback(
            session,
            callback,
            source,
            since=datetime.now(UTC) - LOST_PUSH_WINDOW,
            match_seconds=settings.mpesa_push_match_seconds,
        )
    if routing.unmatched is not None:
        metrics.mpesa_callbacks.labels("unmatched").inc()
    if routing.deposit is not None:
        delivered = await _signal(temporal, routing.deposit, callback)
        if routing.unmatched is None:
            metrics.mpesa_callbacks.labels("accepted" if routing.first else "duplicate").inc()
        if not delivered and callback.result_code == 0:
            await _closed_deposit_paid(sessions, routing.deposit, callback)
    elif routing.unmatched is None:
        metrics.mpesa_callbacks.labels("unmatched").inc()
        log.warning(
            "failure callback for an unknown CheckoutRequestID kept (nothing was paid)",
            checkout_request_id=callback.checkout_request_id,
            result_code=callback.result_code,
        )
    return CallbackAnswer()


async def _closed_deposit_paid(sessions: Any, deposit: DepositRow, callback: StkCallback) -> None:
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


@router.post(
    "/mpesa-status-result/{token}/{deposit_id}",
    response_model=CallbackAnswer,
    responses=error_responses(400, 403, 404, 503),
    summary="Daraja Transaction Status result (ResultURL; called by Safaricom, not by users)",
)
async def transaction_status_result(
    token: str,
    deposit_id: str,
    request: Request,
    settings: SettingsDep,
    reads: ReadSessionsDep,
    temporal: TemporalDep,
    metrics: MetricsDep,
) -> CallbackAnswer:
    """Hand a Transaction Status result to its deposit's workflow (signal
    ``mpesa_transaction_status``). Protected like the STK callback (token, allow-list); the
    workflow uses a result only if its ConversationID is the one Daraja gave its own query."""
    return await _status_result(
        token, deposit_id, request, settings, reads, temporal, metrics, timed_out=False
    )


@router.post(
    "/mpesa-status-result/{token}/{deposit_id}/timeout",
    response_model=CallbackAnswer,
    responses=error_responses(400, 403, 404, 503),
    summary="Daraja Transaction Status queue timeout (QueueTimeOutURL; called by Safaricom)",
)
async def transaction_status_timeout(
    token: str,
    deposit_id: str,
    request: Request,
    settings: SettingsDep,
    reads: ReadSessionsDep,
    temporal: TemporalDep,
    metrics: MetricsDep,
) -> CallbackAnswer:
    """Daraja gave up on a Transaction Status query: the workflow asks again."""
    return await _status_result(
        token, deposit_id, request, settings, reads, temporal, metrics, timed_out=True
    )


async def _status_result(
    token: str,
    deposit_id: str,
    request: Request,
    settings: Settings,
    reads: Any,
    temporal: Client,
    metrics: ApiMetrics,
    *,
    timed_out: bool,
) -> CallbackAnswer:
    result = await read_status_result(token, request, settings, metrics, timed_out=timed_out)
    async with reads() as session:
        deposit = await deposits.find(session, deposit_id)
    if deposit is None:
        raise NotFound("deposit not found", field="deposit_id")
    await _signal_status(temporal, deposit, result)
    metrics.mpesa_callbacks.labels("status_result").inc()
    return CallbackAnswer()


async def read_status_result(
    token: str,
    request: Request,
    settings: Settings,
    metrics: ApiMetrics,
    *,
    timed_out: bool,
) -> TransactionStatusResult:
    """A Transaction Status result (or queue timeout) from Daraja, checked like the STK callback
    (URL token, source allow-list) and parsed; 400 for a malformed body. Shared by the deposit's
    and the reconciliation's result routes, which differ only in whose workflow gets it."""
    _check_caller(token, request, settings, metrics)
    payload = await _json_body(request, metrics)
    try:
        return parse_transaction_status_result(payload, timed_out=timed_out)
    except DarajaCallbackInvalid as exc:
        metrics.mpesa_callbacks.labels("malformed").inc()
        raise BadRequest(exc.message) from exc


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
