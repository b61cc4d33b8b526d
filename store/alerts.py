"""Alerts about one operation (a payment that does not match, a claim Daraja contradicts).

The Monitor's alerts are conditions it measures again on every run and clears itself; these are
events: nothing re-measures them, so they stay open until an admin acknowledges them (which
clears them) or the operation they name resolves them (:func:`clear_event`).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.monitor import CONDITIONS, TEST_CONDITION
from domain.mpesa import RaiseAlertInput
from store.models import Alert, utcnow


def is_event(condition: str) -> bool:
    """Not one of the Monitor's measured conditions."""
    return condition not in CONDITIONS and condition != TEST_CONDITION


async def raise_event(session: AsyncSession, request: RaiseAlertInput) -> str:
    """Open the alert once per (condition, reference): a replayed step finds the first."""
    existing = (
        await session.execute(
            select(Alert).where(
                Alert.condition == request.condition,
                Alert.value == request.reference[:64],
                Alert.status == "open",
            )
        )
    ).scalar_one_or_none()
    if existing is not None:
        return existing.id
    alert = Alert(
        condition=request.condition,
        severity=request.severity,
        message=request.message,
        value=request.reference[:64],
        threshold="",
        status="open",
        tenant=request.tenant,
    )
    session.add(alert)
    await session.flush()
    return alert.id


async def clear_event(session: AsyncSession, condition: str, reference: str) -> None:
    rows = await session.execute(
        select(Alert).where(
            Alert.condition == condition, Alert.value == reference[:64], Alert.status == "open"
        )
    )
    for alert in rows.scalars():
        alert.status, alert.cleared_at = "cleared", utcnow()
