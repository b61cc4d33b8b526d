"""Alerts: list, acknowledge, and send a test alert.

The Monitor's alerts are about the platform (backlog, failure rate, wallets): they have no tenant
and only ``platform_admin`` sees them. An alert about one tenant's operation carries that tenant:
its ``admin`` sees it (and ``platform_admin``). Another tenant's alert is a 404.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel
from sqlalchemy import select
from temporalio.service import RPCError

from api.auth import Principal
from api.deps import (
    OperatorUser,
    PlatformAdmin,
    ReadSessionsDep,
    SessionFactoryDep,
    SettingsDep,
    TemporalDep,
)
from api.errors import error_responses
from api.timestamps import UtcDateTime
from domain.errors import NotFound, ServiceUnavailable
from domain.queues import workflow_queue
from runtime.schedules import monitor_input
from runtime.temporal import temporal_unreachable
from store import alerts
from store.models import Alert, utcnow

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])

ALERT_ID = r"^[0-9a-f-]{36}$"


class AlertView(BaseModel):
    id: str
    condition: str
    severity: str
    message: str
    value: str
    threshold: str
    status: str
    tenant: str | None
    raised_at: UtcDateTime
    cleared_at: UtcDateTime | None
    acknowledged_at: UtcDateTime | None
    acknowledged_by: str | None

    @classmethod
    def of(cls, alert: Alert) -> AlertView:
        return cls.model_validate(alert, from_attributes=True)


class TestAlertStarted(BaseModel):
    workflow_id: str
    message: str


def _visible(alert: Alert, principal: Principal) -> bool:
    return principal.sees_every_tenant or alert.tenant == principal.tenant


@router.get("", response_model=list[AlertView], responses=error_responses(401, 403, 422))
async def list_alerts(
    principal: OperatorUser,
    reads: ReadSessionsDep,
    status: Annotated[Literal["open", "cleared"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AlertView]:
    """Newest first; ``status=open`` for what is wrong now."""
    query = select(Alert).order_by(Alert.raised_at.desc()).limit(limit)
    if not principal.sees_every_tenant:
        query = query.where(Alert.tenant == principal.tenant)
    if status is not None:
        query = query.where(Alert.status == status)
    async with reads() as session:
        return [AlertView.of(a) for a in (await session.execute(query)).scalars()]


@router.post(
    "/{alert_id}/acknowledge",
    response_model=AlertView,
    responses=error_responses(401, 403, 404, 422),
)
async def acknowledge(
    alert_id: Annotated[str, Path(pattern=ALERT_ID)],
    admin: OperatorUser,
    sessions: SessionFactoryDep,
) -> AlertView:
    """Someone is on it: a Monitor alert stays open until the Monitor finds the condition
    cleared; an alert about one operation (not a measured condition) is cleared by this."""
    async with sessions.begin() as session:
        alert = await session.get(Alert, alert_id)
        if alert is None or not _visible(alert, admin):
            raise NotFound(f"no alert {alert_id}", field="alert_id")
        if alert.acknowledged_at is None:
            alert.acknowledged_at, alert.acknowledged_by = utcnow(), admin.subject
        if alerts.is_event(alert.condition) and alert.status == "open":
            # one operation's alert (e.g. an M-Pesa mismatch): nothing re-measures it
            alert.status, alert.cleared_at = "cleared", utcnow()
        return AlertView.of(alert)


@router.post(
    "/test",
    status_code=202,
    response_model=TestAlertStarted,
    responses=error_responses(401, 403, 503),
)
async def test_alert(
    admin: PlatformAdmin, settings: SettingsDep, temporal: TemporalDep
) -> TestAlertStarted:
    """Run the Monitor now with a test alert: the admins get it by email and webhook."""
    workflow_id = f"{settings.task_queue_prefix}monitor-test-{uuid.uuid4()}"
    try:
        await temporal.start_workflow(
            "Monitor",
            monitor_input(settings, test_alert_by=admin.subject),
            id=workflow_id,
            task_queue=workflow_queue(settings.task_queue_prefix),
        )
    except (RPCError, RuntimeError) as exc:
        if not temporal_unreachable(exc):
            raise
        raise ServiceUnavailable(
            "the workflow service is unavailable; no test alert was sent"
        ) from exc
    return TestAlertStarted(
        workflow_id=workflow_id,
        message=f"a test alert goes to {len(settings.admin_emails)} admin email(s) and the "
        f"webhook endpoints of tenant {settings.alert_webhook_tenant}",
    )
