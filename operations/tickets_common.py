"""What the ticket operations share: ids, who sees a purchase, the workflow start and its undo."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from functools import partial
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from api.auth import Principal, Role
from api.job_options import start_kwargs
from api.workflow_starts import nothing_started
from domain.errors import NotFound, ServiceUnavailable, SolanaRejected
from domain.queues import workflow_queue
from domain.search import OperationKind, start_attributes
from domain.tickets import TicketConfig
from operations.context import Context
from providers.solana.client import parse_pubkey
from runtime.settings import Settings
from store import tickets
from store.models import TicketPurchase, User

NAMESPACE = uuid.UUID("0b7d9f4e-3c1a-4e5b-8f2d-6a9c1e7b3d50")
IDENTIFIER = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$"


class Accepted(BaseModel):
    # another ``Accepted`` (api.routers.verification_jobs) makes FastAPI qualify the OpenAPI
    # component by module: pinned to the module it was defined in so the name stays
    # ``api__routers__tickets__Accepted`` (set in the body: pydantic fixes the name at creation)
    __module__ = "api.routers.tickets"

    id: str
    workflow_id: str
    status: str
    status_url: str


def solana_address(value: str, field: str) -> str:
    """``value`` as a base58 Solana address; a ``ValueError`` (a 422 in a model) if it is not."""
    try:
        return str(parse_pubkey(value, field))
    except SolanaRejected as exc:
        raise ValueError(f"must be a base58 Solana address: {value!r}") from exc


def ticket_config(settings: Settings) -> TicketConfig:
    return TicketConfig(
        stripe_timeout_seconds=settings.stripe_timeout_seconds * 2,
        action_timeout_seconds=settings.stripe_action_timeout_seconds,
        mint_max_attempts=settings.ticket_mint_max_attempts,
        solana_timeout_seconds=settings.solana_activity_timeout_seconds,
        full_refund_action=settings.ticket_full_refund_action,
        admin_emails=settings.admin_emails,
    )


def derived_id(principal: Principal, key: str | None, scope: str) -> str:
    """The operation's id: from the caller's ``Idempotency-Key`` when there is one, else new."""
    if not key:
        return str(uuid.uuid4())
    return str(uuid.uuid5(NAMESPACE, f"{scope}\0{principal.tenant}\0{principal.subject}\0{key}"))


def is_staff(principal: Principal) -> bool:
    return bool({Role.ADMIN, Role.VENUE_ADMIN} & principal.roles)


async def visible(session: AsyncSession, purchase_id: str, principal: Principal) -> TicketPurchase:
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
        subject != principal.subject and not is_staff(principal)
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


async def start_workflow(
    ctx: Context,
    run: Any,
    arg: Any,
    workflow_id: str,
    kind: OperationKind,
    principal: Principal,
    *,
    undo: Sequence[tuple[type[Any], str]] = (),
) -> None:
    """Start the operation's workflow (idempotent by id). When Temporal is unreachable and
    nothing started: delete the ``undo`` rows (releasing a purchase's place) and raise
    :class:`ServiceUnavailable`; when it may have started, the rows stay and this returns."""
    start = partial(_start, ctx.temporal, run, arg, workflow_id, ctx.settings, kind, principal)
    try:
        await start()
    except (RPCError, RuntimeError) as exc:
        if await nothing_started(ctx.temporal, workflow_id, exc, retry=start):
            if undo:
                await _undo(ctx.sessions, *undo)
            raise ServiceUnavailable(
                "the workflow service is unavailable; nothing was started"
            ) from exc
        # else it may have started: the rows stay, and the answer is 202
