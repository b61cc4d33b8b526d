"""Ticket purchases: start one (hold a catalogue place, start ``TicketPurchase``) and read one."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, EmailStr, Field, ValidationInfo, field_validator
from sqlalchemy import select

from api import abuse
from api.auth import Principal
from api.timestamps import UtcDateTime
from domain.errors import Conflict, InvalidInput
from domain.search import OperationKind
from domain.tickets import PurchaseStatus, TicketPurchaseInput
from operations.context import Context
from operations.tickets_common import (
    IDENTIFIER,
    Accepted,
    derived_id,
    solana_address,
    start_workflow,
    ticket_config,
    visible,
)
from store import abuse as abuse_counters
from store import accounts, events
from store.models import NftTransferRecord, TicketPurchase, TicketRefund
from workflows.tickets import TicketPurchase as TicketPurchaseWorkflow
from workflows.tickets import purchase_workflow_id

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
        return solana_address(value, "buyer_wallet")

    @field_validator("amount", "currency", mode="before")
    @classmethod
    def _not_from_buyer(cls, value: object, info: ValidationInfo) -> None:
        raise ValueError(
            f"{info.field_name} is set by the event catalogue, not by the buyer: leave it out"
        )


class RefundView(BaseModel):
    id: str
    amount_minor: int
    status: str
    stripe_refund_id: str | None
    reason: str | None


class TransferView(BaseModel):
    # another ``TransferView`` (api.routers.intents) makes FastAPI qualify the OpenAPI component
    # by module: pinned to the module it was defined in so the name stays
    # ``api__routers__tickets__TransferView`` (set in the body: pydantic fixes it at creation)
    __module__ = "api.routers.tickets"

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


async def start_purchase(
    ctx: Context, principal: Principal, body: PurchaseBody, idempotency_key: str | None = None
) -> Accepted:
    """Hold the place (``TICKET_HOLD_SECONDS``), record the purchase and start its workflow; the
    same ``idempotency_key`` again answers the same purchase. A place taken is a 409."""
    settings = ctx.settings
    if body.seat is None and body.section is None:
        raise InvalidInput("name a seat, or a section without named seats", field="seat")
    purchase_id = derived_id(principal, idempotency_key, "purchase")
    workflow_id = purchase_workflow_id(purchase_id)
    created = False
    async with ctx.sessions.begin() as session:
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
    await start_workflow(
        ctx,
        TicketPurchaseWorkflow.run,
        request,
        workflow_id,
        OperationKind.TICKET_PURCHASE,
        principal,
        undo=[(TicketPurchase, purchase_id)] if created else [],
    )
    status = existing.status if existing is not None else PurchaseStatus.PAYING.value
    return Accepted(
        id=purchase_id,
        workflow_id=workflow_id,
        status=status,
        status_url=f"/api/v1/tickets/purchase/{purchase_id}",
    )


async def get_purchase(ctx: Context, principal: Principal, purchase_id: str) -> PurchaseView:
    """The purchase with its refunds and transfers, if the caller may see it (else 404)."""
    async with ctx.reads() as session:
        purchase = await visible(session, purchase_id, principal)
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
