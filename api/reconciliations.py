"""Reconciliations' business steps, shared by the router and the tests: check the window, write
the report's row, start the ``Reconcile`` workflow (undoing the row when Temporal cannot be
reached), read a report with its items."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from domain.errors import InvalidInput, ServiceUnavailable
from domain.mpesa import TransactionStatusResult
from domain.queues import workflow_queue
from runtime.schedules import reconcile_input
from runtime.settings import Settings
from runtime.temporal import temporal_unreachable
from store import reconciliations as store
from store.models import Reconciliation, ReconciliationItem

#: the longest window one request may reconcile (bounded input: one report, one day's reads x 31)
MAX_WINDOW = timedelta(days=31)


@dataclass(frozen=True)
class Report:
    row: Reconciliation
    items: list[ReconciliationItem]


def check_window(since: datetime, until: datetime, now: datetime | None = None) -> None:
    now = now or datetime.now(UTC)
    if until <= since:
        raise InvalidInput("until must be after since", field="until")
    if until > now:
        raise InvalidInput("until must not be in the future", field="until")
    if until - since > MAX_WINDOW:
        raise InvalidInput(f"the window may span {MAX_WINDOW.days} days at most", field="since")


def workflow_id_for(settings: Settings, reconciliation_id: str) -> str:
    return f"{settings.task_queue_prefix}reconcile-{reconciliation_id}"


async def start(
    sessions: async_sessionmaker[AsyncSession],
    temporal: Client,
    settings: Settings,
    *,
    since: datetime,
    until: datetime,
    requested_by: str,
) -> Reconciliation:
    check_window(since, until)
    reconciliation_id = str(uuid.uuid4())
    workflow_id = workflow_id_for(settings, reconciliation_id)
    async with sessions.begin() as session:
        row = Reconciliation(
            id=reconciliation_id,
            workflow_id=workflow_id,
            since=since,
            until=until,
            requested_by=requested_by,
            status=store.RUNNING,
        )
        session.add(row)
    try:
        await temporal.start_workflow(
            "Reconcile",
            reconcile_input(
                settings,
                reconciliation_id=reconciliation_id,
                since=since,
                until=until,
                requested_by=requested_by,
            ),
            id=workflow_id,
            task_queue=workflow_queue(settings.task_queue_prefix),
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
    except (RPCError, RuntimeError) as exc:
        if not temporal_unreachable(exc):
            raise
        async with sessions.begin() as session:
            await session.execute(delete(Reconciliation).where(Reconciliation.id == row.id))
        raise ServiceUnavailable(
            "the workflow service is unavailable; no reconciliation was started"
        ) from exc
    return row


async def get(session: AsyncSession, reconciliation_id: str) -> Report | None:
    row = await session.get(Reconciliation, reconciliation_id)
    if row is None:
        return None
    items = await session.execute(
        select(ReconciliationItem)
        .where(ReconciliationItem.reconciliation_id == row.id)
        .order_by(ReconciliationItem.provider, ReconciliationItem.kind, ReconciliationItem.id)
    )
    return Report(row, list(items.scalars()))


async def recent(session: AsyncSession, limit: int) -> list[Reconciliation]:
    rows = await session.execute(
        select(Reconciliation).order_by(Reconciliation.created_at.desc()).limit(limit)
    )
    return list(rows.scalars())


async def hand_over_status(
    client: Client, workflow_id: str, result: TransactionStatusResult
) -> None:
    """Signal Daraja's answer to the reconciliation waiting for it; one that has finished
    (it stopped waiting) ignores it."""
    try:
        await client.get_workflow_handle(workflow_id).signal("mpesa_transaction_status", result)
    except (RPCError, RuntimeError) as exc:
        if not temporal_unreachable(exc):
            raise
        if isinstance(exc, RPCError) and exc.status == RPCStatusCode.NOT_FOUND:
            return
        raise ServiceUnavailable("could not hand the result to its workflow; not accepted") from exc
