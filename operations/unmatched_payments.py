"""Unmatched M-Pesa payments: success callbacks no deposit recorded (a push whose answer was lost
and that its deposit gave up, a payment after its deposit ended, an ambiguous match). An admin
of the tenant (the tenant of the deposit it was matched to), or a platform_admin (every tenant's,
and the ones whose tenant is unknown), lists them and resolves each: credited to a deposit, or
marked refunded. Who resolved it, when and how is kept on the row.

``GET /api/v1/deposit/unmatched-payments``, ``POST .../{id}/resolve``
(:mod:`api.routers.unmatched_payments`) and the dead-letter listing call these."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.auth import Principal
from api.timestamps import UtcDateTime
from domain.errors import InvalidInput
from domain.money import Currency, format_minor
from operations.context import Context
from store import unmatched_payments
from store.models import MpesaUnmatchedPayment

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
Status = Literal["open", "offered", "adopted", "credited", "refunded"]


class UnmatchedPaymentView(BaseModel):
    id: str
    status: str
    checkout_request_id: str
    receipt: str | None
    phone: str | None
    amount: str | None
    amount_minor: int | None
    tenant: str | None
    #: the deposit it was offered to, may belong to, or was credited to
    deposit_id: str | None
    reason: str
    received_at: UtcDateTime
    resolved_at: UtcDateTime | None
    resolved_by: str | None
    resolution_reference: str | None

    @classmethod
    def of(cls, row: MpesaUnmatchedPayment) -> UnmatchedPaymentView:
        return cls(
            id=row.id,
            status=row.status,
            checkout_request_id=row.checkout_request_id,
            receipt=row.receipt,
            phone=row.phone,
            amount=format_minor(row.amount_minor, Currency.KES)
            if row.amount_minor is not None
            else None,
            amount_minor=row.amount_minor,
            tenant=row.tenant,
            deposit_id=row.deposit_id,
            reason=row.reason,
            received_at=row.received_at,
            resolved_at=row.resolved_at,
            resolved_by=row.resolved_by,
            resolution_reference=row.resolution_reference,
        )


class UnmatchedPaymentList(BaseModel):
    items: list[UnmatchedPaymentView]
    count: int


class ResolveUnmatched(BaseModel):
    """``credit`` with ``deposit_id`` (a failed or abandoned deposit of the same phone and
    amount, never credited), or ``refunded`` with the refund's ``reference``."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["credit", "refunded"]
    deposit_id: str | None = Field(default=None, pattern=UUID_PATTERN)
    reference: str | None = Field(default=None, min_length=1, max_length=255)

    def check(self) -> None:
        """The field the action needs (422 naming it, before anything is read or changed)."""
        if self.action == "credit" and not self.deposit_id:
            raise InvalidInput("credit needs deposit_id", field="deposit_id")
        if self.action == "refunded" and not self.reference:
            raise InvalidInput("refunded needs the refund's reference", field="reference")


def scope(principal: Principal) -> str | None:
    """The tenant whose payments the caller sees and resolves; None: every one (platform)."""
    return None if principal.sees_every_tenant else principal.tenant


def who(principal: Principal) -> str:
    return f"{principal.tenant}/{principal.subject}"


async def open_items(
    reads: async_sessionmaker[AsyncSession], principal: Principal, limit: int = 100
) -> list[UnmatchedPaymentView]:
    """The open ones the caller may resolve (also listed with the dead letters)."""
    async with reads() as session:
        rows = await unmatched_payments.listing(
            session, scope(principal), [unmatched_payments.OPEN], limit
        )
    return [UnmatchedPaymentView.of(r) for r in rows]


async def list_payments(
    ctx: Context,
    principal: Principal,
    statuses: Sequence[Status] | None = None,
    limit: int = 100,
) -> UnmatchedPaymentList:
    """Unmatched payments of the caller's tenant (every tenant's and the unknown ones for a
    platform_admin), newest first; ``statuses`` default: open."""
    async with ctx.reads() as session:
        rows = await unmatched_payments.listing(
            session, scope(principal), statuses or [unmatched_payments.OPEN], limit
        )
    items = [UnmatchedPaymentView.of(r) for r in rows]
    return UnmatchedPaymentList(items=items, count=len(items))


async def resolve(
    ctx: Context, principal: Principal, payment_id: str, body: ResolveUnmatched
) -> UnmatchedPaymentView:
    """Credit an open payment to a deposit (through the deposit's ledger path, once; Conflict
    when the deposit is credited already, still open, or of another amount or phone), or mark
    it refunded. Conflict also when the payment is not open. Nothing changes on a refusal."""
    body.check()
    async with ctx.sessions.begin() as session:
        if body.action == "credit":
            assert body.deposit_id is not None
            row = await unmatched_payments.credit_to_deposit(
                session,
                payment_id,
                body.deposit_id,
                tenant=scope(principal),
                who=who(principal),
            )
        else:
            assert body.reference is not None
            row = await unmatched_payments.mark_refunded(
                session, payment_id, body.reference, tenant=scope(principal), who=who(principal)
            )
        return UnmatchedPaymentView.of(row)
