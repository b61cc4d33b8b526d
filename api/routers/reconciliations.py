"""Reconciliations: compare Settle's ledger and rows with each provider's own record of a window.

Platform-wide: the providers' records (Daraja's callbacks to the shortcode, the Stripe account,
the treasury, the ticket authority) belong to no one tenant, and a report names every tenant's
rows, so only ``platform_admin`` starts or reads them (a tenant's ``admin`` gets 403). Each
mismatch also opens a platform alert (``reconciliation_mismatch``) in ``GET /api/v1/alerts``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from api import reconciliations as service
from api.daraja_results import CallbackAnswer, read_status_result
from api.deps import (
    MetricsDep,
    PlatformAdmin,
    ReadSessionsDep,
    SessionFactoryDep,
    SettingsDep,
    TemporalDep,
)
from api.errors import error_responses
from api.timestamps import UtcDateTime
from domain.errors import NotFound
from store.models import Reconciliation, ReconciliationItem

router = APIRouter(prefix="/api/v1/reconciliations", tags=["reconciliations"])

RECONCILIATION_ID = r"^[0-9a-f-]{36}$"


class ReconcileRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: UtcDateTime = Field(description="start of the window (inclusive)")
    until: UtcDateTime = Field(description="end of the window (exclusive), not in the future")


class ItemView(BaseModel):
    provider: str
    kind: str
    provider_ref: str
    provider_amount_minor: int | None
    currency: str | None
    #: Settle's row, or ``none``
    settle_ref: str
    settle_amount_minor: int | None
    detail: str
    alert_id: str | None

    @classmethod
    def of(cls, item: ReconciliationItem) -> ItemView:
        return cls.model_validate(item, from_attributes=True)


class ReconciliationView(BaseModel):
    id: str
    workflow_id: str
    since: UtcDateTime
    until: UtcDateTime
    requested_by: str
    #: running | completed
    status: str
    #: true: every provider's record matched Settle's; null while running
    clean: bool | None
    #: provider -> records compared
    checked: dict[str, int] | None
    error: str | None
    created_at: UtcDateTime
    completed_at: UtcDateTime | None

    @classmethod
    def of(cls, row: Reconciliation) -> ReconciliationView:
        return cls.model_validate(row, from_attributes=True)


class ReportView(ReconciliationView):
    items: list[ItemView]


@router.post(
    "",
    status_code=202,
    response_model=ReconciliationView,
    responses=error_responses(401, 403, 422, 503),
)
async def start_reconciliation(
    body: ReconcileRequest,
    admin: PlatformAdmin,
    sessions: SessionFactoryDep,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> ReconciliationView:
    """Reconcile ``[since, until)`` now; read the report at ``GET /{id}``."""
    row = await service.start(
        sessions,
        temporal,
        settings,
        since=body.since,
        until=body.until,
        requested_by=admin.subject,
    )
    return ReconciliationView.of(row)


@router.get("", response_model=list[ReconciliationView], responses=error_responses(401, 403, 422))
async def list_reconciliations(
    admin: PlatformAdmin,
    reads: ReadSessionsDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[ReconciliationView]:
    """Newest first, scheduled and on-demand runs alike."""
    async with reads() as session:
        return [ReconciliationView.of(r) for r in await service.recent(session, limit)]


@router.get(
    "/{reconciliation_id}",
    response_model=ReportView,
    responses=error_responses(401, 403, 404, 422),
)
async def get_reconciliation(
    reconciliation_id: Annotated[str, Path(pattern=RECONCILIATION_ID)],
    admin: PlatformAdmin,
    reads: ReadSessionsDep,
) -> ReportView:
    """The report: ``clean`` and every mismatch with its evidence."""
    async with reads() as session:
        report = await service.get(session, reconciliation_id)
    if report is None:
        raise NotFound(f"no reconciliation {reconciliation_id}", field="reconciliation_id")
    return ReportView(
        **ReconciliationView.of(report.row).model_dump(),
        items=[ItemView.of(i) for i in report.items],
    )


@router.post(
    "/mpesa-status-result/{token}/{reconciliation_id}",
    response_model=CallbackAnswer,
    responses=error_responses(400, 403, 404, 503),
    summary="Daraja Transaction Status result for a reconciliation (called by Safaricom)",
)
async def transaction_status_result(
    token: str,
    reconciliation_id: str,
    request: Request,
    settings: SettingsDep,
    reads: ReadSessionsDep,
    temporal: TemporalDep,
    metrics: MetricsDep,
) -> CallbackAnswer:
    """Hand Daraja's answer about a receipt to the reconciliation's workflow. Protected like the
    STK callback (URL token, source allow-list); the workflow uses a result only for a
    ConversationID Daraja gave one of its own queries."""
    return await _status_result(
        token, reconciliation_id, request, settings, reads, temporal, metrics, timed_out=False
    )


@router.post(
    "/mpesa-status-result/{token}/{reconciliation_id}/timeout",
    response_model=CallbackAnswer,
    responses=error_responses(400, 403, 404, 503),
    summary="Daraja Transaction Status queue timeout for a reconciliation (called by Safaricom)",
)
async def transaction_status_timeout(
    token: str,
    reconciliation_id: str,
    request: Request,
    settings: SettingsDep,
    reads: ReadSessionsDep,
    temporal: TemporalDep,
    metrics: MetricsDep,
) -> CallbackAnswer:
    """Daraja gave up on the query: the item says Transaction Status timed out."""
    return await _status_result(
        token, reconciliation_id, request, settings, reads, temporal, metrics, timed_out=True
    )


async def _status_result(
    token: str,
    reconciliation_id: str,
    request: Request,
    settings: SettingsDep,
    reads: ReadSessionsDep,
    temporal: TemporalDep,
    metrics: MetricsDep,
    *,
    timed_out: bool,
) -> CallbackAnswer:
    result = await read_status_result(token, request, settings, metrics, timed_out=timed_out)
    async with reads() as session:
        row = await session.get(Reconciliation, reconciliation_id)
    if row is None:
        raise NotFound("reconciliation not found", field="reconciliation_id")
    await service.hand_over_status(temporal, row.workflow_id, result)
    metrics.mpesa_callbacks.labels("status_result").inc()
    return CallbackAnswer()
