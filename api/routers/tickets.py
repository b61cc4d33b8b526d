"""Ticket purchases, refunds and NFT transfers."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StrictInt,
    ValidationInfo,
    field_validator,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from api import abuse
from api.auth import Principal, Role
from api.deps import CurrentUser, ReadSessionsDep, SessionFactoryDep, SettingsDep, TemporalDep
from api.errors import error_responses
from api.job_options import start_kwargs
from api.timestamps import UtcDateTime
from api.workflow_starts import nothing_started
from domain.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    RefundRefused,
    ServiceUnavailable,
    SolanaRejected,
)
from domain.queues import workflow_queue
from domain.search import OperationKind, start_attributes
from domain.tickets import (
    NftTransferInput,
    PurchaseStatus,
    RefundInput,
    TicketConfig,
    TicketPurchaseInput,
)
from providers.solana.client import parse_pubkey
from runtime.logging import get_logger
from runtime.settings import Settings
from store import abuse as abuse_counters
from store import accounts, events, tickets
from store.models import (
    NftTransferRecord,
    TicketPurchase,
    TicketRefund,
    TicketRefundRequest,
    User,
)
from workflows.tickets import (
    NftTransfer,
    Refund,
    purchase_workflow_id,
    refund_workflow_id,
    transfer_workflow_id,
)
from workflows.tickets import (
    TicketPurchase as TicketPurchaseWorkflow,
)

log = get_logger("api.tickets")
router = APIRouter(prefix="/api/v1/tickets", tags=["tickets"])

NAMESPACE = uuid.UUID("0b7d9f4e-3c1a-4e5b-8f2d-6a9c1e7b3d50")
IDENTIFIER = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$"
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)]


def _solana_address(value: str, field: str) -> str:
    try:
        return str(parse_pubkey(value, field))
    except SolanaRejected as exc:
        raise ValueError(f"must be a base58 Solana address: {value!r}") from exc


PRICE_FROM_CATALOGUE = (
    "not accepted: the price and currency come from the event catalogue "
    "(GET /api/v1/events/{id}); a purchase that sends it is refused (422)"
)


class PurchaseBody(BaseModel):
    """A place of a catalogue event: a named ``seat``, or a ``section`` without named seats.

    The price and currency are the catalogue's; ``amount`` and ``currency`` are refused.
    """

    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(
        min_length=1, max_length=128, pattern=IDENTIFIER, examples=["0b7d9f4e-3c1a-4e5b-8f2d"]
    )
    seat: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=IDENTIFIER, examples=["A-12"]
    )
    section: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=IDENTIFIER, examples=["FLOOR"]
    )
    amount: None = Field(default=None, description=PRICE_FROM_CATALOGUE)
    currency: None = Field(default=None, description=PRICE_FROM_CATALOGUE)
    payment_method: str = Field(pattern=r"^pm_[A-Za-z0-9_]{3,120}$", examples=["pm_card_visa"])
    buyer_email: EmailStr
    buyer_wallet: str = Field(examples=["9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"])

    @field_validator("buyer_wallet")
    @classmethod
    def _wallet(cls, value: str) -> str:
        return _solana_address(value, "buyer_wallet")

    @field_validator("amount", "currency", mode="before")
    @classmethod
    def _not_from_buyer(cls, value: object, info: ValidationInfo) -> None:
        raise ValueError(
            f"{info.field_name} is set by the event catalogue, not by the buyer: leave it out"
        )


class RefundBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: StrictInt | None = Field(
        default=None, description="minor units; omit for everything left"
    )
    reason: str | None = Field(default=None, max_length=500)
    #: void the ticket (freeze or burn its NFT, put the place back on sale) even when partial
    void_ticket: bool = False


class TransferBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to_wallet: str

    @field_validator("to_wallet")
    @classmethod
    def _wallet(cls, value: str) -> str:
        return _solana_address(value, "to_wallet")


class Accepted(BaseModel):
    id: str
    workflow_id: str
    status: str
    status_url: str


class RefundView(BaseModel):
    id: str
    amount_minor: int
    status: str
    stripe_refund_id: str | None
    reason: str | None


class TransferView(BaseModel):
    id: str
    from_wallet: str
    to_wallet: str
    status: str
    signature: str | None
    failure_reason: str | None


class PurchaseView(BaseModel):
    id: str
    workflow_id: str
    status: str
    event_id: str
    seat: str
    #: the catalogue section (null for purchases from before the catalogue)
    section: str | None
    amount_minor: int
    currency: str
    amount_captured: int
    amount_refunded: int
    buyer_email: str
    buyer_wallet: str
    owner_wallet: str | None
    payment_intent: str | None
    mint: str | None
    token_account: str | None
    failure_reason: str | None
    refunds: list[RefundView]
    transfers: list[TransferView]
    created_at: UtcDateTime


def ticket_config(settings: Settings) -> TicketConfig:
    return TicketConfig(
        stripe_timeout_seconds=settings.stripe_timeout_seconds * 2,
        action_timeout_seconds=settings.stripe_action_timeout_seconds,
        mint_max_attempts=settings.ticket_mint_max_attempts,
        solana_timeout_seconds=settings.solana_activity_timeout_seconds,
        full_refund_action=settings.ticket_full_refund_action,
        admin_emails=settings.admin_emails,
    )


def _derived_id(principal: Principal, key: str | None, scope: str) -> str:
    if not key:
        return str(uuid.uuid4())
    return str(uuid.uuid5(NAMESPACE, f"{scope}\0{principal.tenant}\0{principal.subject}\0{key}"))


def _is_staff(principal: Principal) -> bool:
    return bool({Role.ADMIN, Role.VENUE_ADMIN} & principal.roles)


async def _visible(session: AsyncSession, purchase_id: str, principal: Principal) -> TicketPurchase:
    """The purchase, if the caller may see it: its buyer, or staff of its tenant; else 404."""
    row = (
        await session.execute(
            select(TicketPurchase, User.subject)
            .join(User, User.id == TicketPurchase.user_id)
            .where(TicketPurchase.id == purchase_id)
        )
    ).one_or_none()
    if row is None:
        raise NotFound("ticket purchase not found")
    purchase, subject = row
    if purchase.tenant != principal.tenant or (
        subject != principal.subject and not _is_staff(principal)
    ):
        raise NotFound("ticket purchase not found")
    return purchase


async def _start(
    client: Client,
    run: Any,
    arg: Any,
    workflow_id: str,
    settings: Settings,
    kind: OperationKind,
    principal: Principal,
) -> None:
    # a finished run with this id means the request was already handled
    with contextlib.suppress(WorkflowAlreadyStartedError):
        await client.start_workflow(
            run,
            arg,
            id=workflow_id,
            task_queue=workflow_queue(settings.task_queue_prefix),
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=start_attributes(kind, principal.tenant, principal.subject),
            **start_kwargs(),
        )


async def _undo(sessions: async_sessionmaker[AsyncSession], *rows: tuple[type[Any], str]) -> None:
    async with sessions.begin() as session:
        for model, key in rows:
            row = await session.get(model, key)
            if row is not None:
                await session.delete(row)
        for model, key in rows:
            if model is TicketPurchase:
                await tickets.release_seat(session, key)


@router.post(
    "/purchase",
    status_code=202,
    response_model=Accepted,
    responses=error_responses(401, 409, 422, 503),
)
async def purchase(
    body: PurchaseBody,
    principal: CurrentUser,
    settings: SettingsDep,
    sessions: SessionFactoryDep,
    temporal: TemporalDep,
    idempotency_key: IdempotencyKey = None,
) -> Accepted:
    """Buy a place of a catalogue event at the catalogue's price: the place is held for
    ``TICKET_HOLD_SECONDS``, the card charged, the NFT minted to ``buyer_wallet``, the buyer
    emailed. A place someone else holds or bought is a 409."""
    if body.seat is None and body.section is None:
        raise InvalidInput("name a seat, or a section without named seats", field="seat")
    purchase_id = _derived_id(principal, idempotency_key, "purchase")
    workflow_id = purchase_workflow_id(purchase_id)
    created = False
    async with sessions.begin() as session:
        event = await events.get_event(session, principal.tenant, body.event_id)
        user = await accounts.get_or_create_user(session, principal.tenant, principal.subject)
        existing = await session.get(TicketPurchase, purchase_id)
        if existing is not None:
            asked = (body.event_id, body.seat or existing.seat, body.buyer_wallet)
            same = (existing.event_id, existing.seat, existing.buyer_wallet)
            if same != asked or (body.section not in (None, existing.section)):
                raise Conflict(
                    "Idempotency-Key was already used for a different purchase",
                    field="Idempotency-Key",
                )
            place = events.HeldPlace(
                section=existing.section or existing.seat,
                seat=existing.seat,
                price_minor=existing.amount_minor,
                currency=existing.currency,
            )
        else:
            events.sales_open(event, datetime.now(UTC))
            await abuse_counters.take(session, abuse.ticket_purchase(settings, principal))
            place = await events.hold(
                session,
                event,
                seat=body.seat,
                section_code=body.section,
                purchase_id=purchase_id,
                hold_seconds=settings.ticket_hold_seconds,
            )
            session.add(
                TicketPurchase(
                    id=purchase_id,
                    tenant=principal.tenant,
                    user_id=user.id,
                    event_id=event.id,
                    seat=place.seat,
                    section=place.section,
                    amount_minor=place.price_minor,
                    currency=place.currency,
                    buyer_email=str(body.buyer_email),
                    buyer_wallet=body.buyer_wallet,
                    status=PurchaseStatus.PAYING.value,
                    workflow_id=workflow_id,
                    request_key=idempotency_key,
                    amount_captured=0,
                    amount_refunded=0,
                )
            )
            created = True
        nft_name = event.nft_name or event.name[:32]
        symbol = event.nft_symbol or settings.solana_ticket_symbol
        metadata_base = event.nft_metadata_base_uri or settings.ticket_metadata_base_uri
    request = TicketPurchaseInput(
        purchase_id=purchase_id,
        tenant=principal.tenant,
        user_id=user.id,
        subject=principal.subject,
        event_id=body.event_id,
        seat=place.seat,
        amount_minor=place.price_minor,
        currency=place.currency,
        payment_method=body.payment_method,
        buyer_email=str(body.buyer_email),
        buyer_wallet=body.buyer_wallet,
        metadata_uri=f"{metadata_base}{purchase_id}.json",
        symbol=symbol,
        nft_name=nft_name,
        config=ticket_config(settings),
        task_queue_prefix=settings.task_queue_prefix,
    )
    try:
        await _start(
            temporal,
            TicketPurchaseWorkflow.run,
            request,
            workflow_id,
            settings,
            OperationKind.TICKET_PURCHASE,
            principal,
        )
    except (RPCError, RuntimeError) as exc:
        retry = partial(
            _start, temporal, TicketPurchaseWorkflow.run, request, workflow_id, settings,
            OperationKind.TICKET_PURCHASE, principal,
        )  # fmt: skip
        if await nothing_started(temporal, workflow_id, exc, retry=retry):
            if created:
                await _undo(sessions, (TicketPurchase, purchase_id))
            raise ServiceUnavailable(
                "the workflow service is unavailable; nothing was started"
            ) from exc
        # else it may have started: the purchase stays, and the answer is 202
    status = existing.status if existing is not None else PurchaseStatus.PAYING.value
    return Accepted(
        id=purchase_id,
        workflow_id=workflow_id,
        status=status,
        status_url=f"/api/v1/tickets/purchase/{purchase_id}",
    )


@router.get(
    "/purchase/{purchase_id}", response_model=PurchaseView, responses=error_responses(401, 404)
)
async def get_purchase(
    purchase_id: str, principal: CurrentUser, reads: ReadSessionsDep
) -> PurchaseView:
    async with reads() as session:
        purchase = await _visible(session, purchase_id, principal)
        refunds = (
            (
                await session.execute(
                    select(TicketRefund)
                    .where(TicketRefund.purchase_id == purchase.id)
                    .order_by(TicketRefund.created_at)
                )
            )
            .scalars()
            .all()
        )
        transfers = (
            (
                await session.execute(
                    select(NftTransferRecord)
                    .where(NftTransferRecord.purchase_id == purchase.id)
                    .order_by(NftTransferRecord.created_at)
                )
            )
            .scalars()
            .all()
        )
    created = (
        purchase.created_at
        if purchase.created_at.tzinfo
        else purchase.created_at.replace(tzinfo=UTC)
    )
    return PurchaseView(
        id=purchase.id,
        workflow_id=purchase.workflow_id,
        status=purchase.status,
        event_id=purchase.event_id,
        seat=purchase.seat,
        section=purchase.section,
        amount_minor=purchase.amount_minor,
        currency=purchase.currency,
        amount_captured=purchase.amount_captured,
        amount_refunded=purchase.amount_refunded,
        buyer_email=purchase.buyer_email,
        buyer_wallet=purchase.buyer_wallet,
        owner_wallet=purchase.owner_wallet,
        payment_intent=purchase.payment_intent_id,
        mint=purchase.mint_address,
        token_account=purchase.token_account,
        failure_reason=purchase.failure_reason,
        refunds=[
            RefundView(
                id=r.id,
                amount_minor=r.amount_minor,
                status=r.status,
                stripe_refund_id=r.stripe_refund_id,
                reason=r.reason,
            )
            for r in refunds
        ],
        transfers=[
            TransferView(
                id=t.id,
                from_wallet=t.from_wallet,
                to_wallet=t.to_wallet,
                status=t.status,
                signature=t.signature,
                failure_reason=t.failure_reason,
            )
            for t in transfers
        ],
        created_at=created,
    )


@router.post(
    "/{purchase_id}/refund",
    status_code=202,
    response_model=Accepted,
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
async def refund(
    purchase_id: str,
    body: RefundBody,
    principal: CurrentUser,
    settings: SettingsDep,
    sessions: SessionFactoryDep,
    temporal: TemporalDep,
    idempotency_key: IdempotencyKey = None,
) -> Accepted:
    """Refund all (no amount) or part of a ticket, never more than is left to refund: issued by
    the venue (``venue_admin`` or ``admin``). A buyer asks with ``POST .../refund-requests``.
    A full refund, or ``void_ticket``, voids the ticket: its NFT is frozen or burned."""
    if body.amount is not None and body.amount <= 0:
        raise InvalidInput("amount must be a positive number of minor units", field="amount")
    async with sessions() as session:
        purchase = await _visible(session, purchase_id, principal)
    if not _is_staff(principal):
        raise Forbidden(
            "refunds are issued by the venue; ask for one with "
            f"POST /api/v1/tickets/{purchase_id}/refund-requests"
        )
    refund_id = _derived_id(principal, idempotency_key, f"refund:{purchase_id}")
    return await start_refund(
        purchase,
        refund_id,
        amount=body.amount,
        reason=body.reason,
        void_ticket=body.void_ticket,
        principal=principal,
        settings=settings,
        sessions=sessions,
        temporal=temporal,
    )


async def start_refund(
    purchase: TicketPurchase,
    refund_id: str,
    *,
    amount: int | None,
    reason: str | None,
    void_ticket: bool,
    principal: Principal,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    temporal: Client,
) -> Accepted:
    """Check what is left to refund and start the ``Refund`` workflow (idempotent by id)."""
    async with sessions() as session:
        already = await session.get(TicketRefund, refund_id)
        reserved = sum(
            r.amount_minor
            for r in (
                await session.execute(
                    select(TicketRefund).where(
                        TicketRefund.purchase_id == purchase.id, TicketRefund.status == "reserved"
                    )
                )
            ).scalars()
        )
    if already is None:
        if purchase.amount_captured == 0:
            raise RefundRefused("nothing was captured for this purchase (yet)", field="amount")
        left = purchase.amount_captured - purchase.amount_refunded - reserved
        if (amount or left) > left or left <= 0:
            raise RefundRefused(
                f"at most {left} is left to refund on this purchase", field="amount"
            )
    workflow_id = refund_workflow_id(refund_id)
    request = RefundInput(
        refund_id=refund_id,
        purchase_id=purchase.id,
        tenant=purchase.tenant,
        amount_minor=amount,
        requested_by=principal.subject,
        reason=reason,
        buyer_email=purchase.buyer_email,
        event_id=purchase.event_id,
        seat=purchase.seat,
        mint=purchase.mint_address,
        void_ticket=void_ticket,
        config=ticket_config(settings),
        task_queue_prefix=settings.task_queue_prefix,
    )
    try:
        await _start(
            temporal,
            Refund.run,
            request,
            workflow_id,
            settings,
            OperationKind.TICKET_REFUND,
            principal,
        )
    except (RPCError, RuntimeError) as exc:
        retry = partial(
            _start, temporal, Refund.run, request, workflow_id, settings,
            OperationKind.TICKET_REFUND, principal,
        )  # fmt: skip
        if await nothing_started(temporal, workflow_id, exc, retry=retry):
            raise ServiceUnavailable(
                "the workflow service is unavailable; nothing was started"
            ) from exc
    return Accepted(
        id=refund_id,
        workflow_id=workflow_id,
        status="pending",
        status_url=f"/api/v1/tickets/purchase/{purchase.id}",
    )


# --- refund requests: the buyer asks, the venue decides --------------------------------------


class RefundRequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: StrictInt | None = Field(
        default=None, gt=0, description="minor units; omit for everything left"
    )
    reason: str | None = Field(default=None, max_length=500)


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=500)
    #: approve only: void the ticket even when the refund is partial
    void_ticket: bool = False


class RefundRequestView(BaseModel):
    id: str
    purchase_id: str
    requested_by: str
    amount_minor: int | None
    reason: str | None
    status: str
    decided_by: str | None
    decision_reason: str | None
    refund_id: str | None
    created_at: UtcDateTime


def _request_view(row: TicketRefundRequest) -> RefundRequestView:
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    return RefundRequestView(
        id=row.id,
        purchase_id=row.purchase_id,
        requested_by=row.requested_by,
        amount_minor=row.amount_minor,
        reason=row.reason,
        status=row.status,
        decided_by=row.decided_by,
        decision_reason=row.decision_reason,
        refund_id=row.refund_id,
        created_at=created,
    )


@router.post(
    "/{purchase_id}/refund-requests",
    status_code=201,
    response_model=RefundRequestView,
    responses=error_responses(401, 404, 422),
)
async def ask_for_refund(
    purchase_id: str,
    body: RefundRequestBody,
    principal: CurrentUser,
    sessions: SessionFactoryDep,
) -> RefundRequestView:
    """The buyer asks the venue for a refund; the venue approves (the refund starts) or
    declines it."""
    async with sessions.begin() as session:
        purchase = await _visible(session, purchase_id, principal)
        left = purchase.amount_captured - purchase.amount_refunded
        if left <= 0:
            raise RefundRefused("nothing is left to refund on this purchase", field="amount")
        if body.amount is not None and body.amount > left:
            raise RefundRefused(f"at most {left} is left to refund", field="amount")
        row = TicketRefundRequest(
            purchase_id=purchase.id,
            tenant=purchase.tenant,
            requested_by=principal.subject,
            amount_minor=body.amount,
            reason=body.reason,
            status="pending",
        )
        session.add(row)
        await session.flush()
        return _request_view(row)


@router.get(
    "/refund-requests",
    response_model=list[RefundRequestView],
    responses=error_responses(401, 422),
)
async def list_refund_requests(
    principal: CurrentUser,
    reads: ReadSessionsDep,
    status: Annotated[str | None, Query(pattern=r"^(pending|approved|declined)$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[RefundRequestView]:
    """The venue sees its tenant's requests; a buyer sees their own. Oldest first."""
    query = select(TicketRefundRequest).where(TicketRefundRequest.tenant == principal.tenant)
    if not _is_staff(principal):
        query = query.where(TicketRefundRequest.requested_by == principal.subject)
    if status is not None:
        query = query.where(TicketRefundRequest.status == status)
    query = query.order_by(TicketRefundRequest.created_at, TicketRefundRequest.id)
    async with reads() as session:
        rows = (await session.execute(query.limit(limit).offset(offset))).scalars()
        return [_request_view(r) for r in rows]


async def _pending_request(
    session: AsyncSession, request_id: str, principal: Principal
) -> TicketRefundRequest:
    row = (
        await session.execute(
            select(TicketRefundRequest)
            .where(TicketRefundRequest.id == request_id)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if row is None or row.tenant != principal.tenant:
        raise NotFound("refund request not found")
    if not _is_staff(principal):
        raise Forbidden("refund requests are decided by the venue (venue_admin or admin)")
    if row.status != "pending":
        raise Conflict(f"the refund request was already {row.status}")
    return row


@router.post(
    "/refund-requests/{request_id}/approve",
    status_code=202,
    response_model=Accepted,
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
async def approve_refund_request(
    request_id: str,
    principal: CurrentUser,
    settings: SettingsDep,
    sessions: SessionFactoryDep,
    temporal: TemporalDep,
    body: DecisionBody | None = None,
) -> Accepted:
    """Approve a buyer's request: the refund it asked for starts (venue staff)."""
    decision = body or DecisionBody()
    refund_id = str(uuid.uuid5(NAMESPACE, f"refund-request\0{request_id}"))
    async with sessions.begin() as session:
        row = await _pending_request(session, request_id, principal)
        row.status, row.decided_by, row.refund_id = "approved", principal.subject, refund_id
        row.decision_reason = decision.reason
        purchase = await tickets.get(session, row.purchase_id)
        amount, reason = row.amount_minor, row.reason
    try:
        return await start_refund(
            purchase,
            refund_id,
            amount=amount,
            reason=reason,
            void_ticket=decision.void_ticket,
            principal=principal,
            settings=settings,
            sessions=sessions,
            temporal=temporal,
        )
    except Exception:
        async with sessions.begin() as session:  # nothing started: the request is pending again
            again = await session.get(TicketRefundRequest, request_id)
            if again is not None:
                again.status, again.decided_by, again.refund_id = "pending", None, None
                again.decision_reason = None
        raise


@router.post(
    "/refund-requests/{request_id}/decline",
    response_model=RefundRequestView,
    responses=error_responses(401, 403, 404, 409, 422),
)
async def decline_refund_request(
    request_id: str,
    principal: CurrentUser,
    sessions: SessionFactoryDep,
    body: DecisionBody | None = None,
) -> RefundRequestView:
    """Decline a buyer's request, with a reason they can read (venue staff)."""
    async with sessions.begin() as session:
        row = await _pending_request(session, request_id, principal)
        row.status, row.decided_by = "declined", principal.subject
        row.decision_reason = (body or DecisionBody()).reason
        await session.flush()
        return _request_view(row)


@router.post(
    "/{purchase_id}/transfer",
    status_code=202,
    response_model=Accepted,
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
async def transfer(
    purchase_id: str,
    body: TransferBody,
    principal: CurrentUser,
    settings: SettingsDep,
    sessions: SessionFactoryDep,
    temporal: TemporalDep,
    idempotency_key: IdempotencyKey = None,
) -> Accepted:
    """Move the NFT ticket to another wallet (secondary market): by its buyer while it is still
    in the wallet it was bought with (checked on chain by the workflow), or by the venue from
    whoever holds it."""
    transfer_id = _derived_id(principal, idempotency_key, f"transfer:{purchase_id}")
    async with sessions.begin() as session:
        purchase = await _visible(session, purchase_id, principal)
        if purchase.mint_address is None or purchase.status != PurchaseStatus.COMPLETED:
            raise Conflict("the ticket has not been minted (or was refunded)")
        owner = purchase.owner_wallet or purchase.buyer_wallet
        if not _is_staff(principal) and owner != purchase.buyer_wallet:
            # the buyer moved it on: the holder now is someone else, and the permanent delegate
            # never acts for a former holder. The holder moves it with their own key; the venue
            # can move it from its holder.
            raise Forbidden(
                "the ticket is no longer in the wallet it was bought with: only its current "
                "holder or the venue may move it"
            )
        existing = await session.get(NftTransferRecord, transfer_id)
        if existing is None:
            if body.to_wallet == owner:
                raise InvalidInput("to_wallet already holds this ticket", field="to_wallet")
            session.add(
                NftTransferRecord(
                    id=transfer_id,
                    purchase_id=purchase.id,
                    tenant=purchase.tenant,
                    from_wallet=owner,
                    to_wallet=body.to_wallet,
                    status="pending",
                    workflow_id=transfer_workflow_id(transfer_id),
                )
            )
        elif existing.to_wallet != body.to_wallet:
            raise Conflict(
                "Idempotency-Key was already used for a different transfer", field="Idempotency-Key"
            )
        else:
            owner = existing.from_wallet
    request = NftTransferInput(
        transfer_id=transfer_id,
        purchase_id=purchase.id,
        tenant=purchase.tenant,
        mint=purchase.mint_address,
        from_wallet=owner,
        to_wallet=body.to_wallet,
        buyer_email=purchase.buyer_email,
        event_id=purchase.event_id,
        seat=purchase.seat,
        task_queue_prefix=settings.task_queue_prefix,
    )
    try:
        await _start(
            temporal,
            NftTransfer.run,
            request,
            transfer_workflow_id(transfer_id),
            settings,
            OperationKind.NFT_TRANSFER,
            principal,
        )
    except (RPCError, RuntimeError) as exc:
        retry = partial(
            _start, temporal, NftTransfer.run, request, transfer_workflow_id(transfer_id),
            settings, OperationKind.NFT_TRANSFER, principal,
        )  # fmt: skip
        if await nothing_started(temporal, transfer_workflow_id(transfer_id), exc, retry=retry):
            if existing is None:
                await _undo(sessions, (NftTransferRecord, transfer_id))
            raise ServiceUnavailable(
                "the workflow service is unavailable; nothing was started"
            ) from exc
    return Accepted(
        id=transfer_id,
        workflow_id=transfer_workflow_id(transfer_id),
        status="pending",
        status_url=f"/api/v1/tickets/purchase/{purchase.id}",
    )
