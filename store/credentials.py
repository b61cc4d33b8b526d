"""Credential anchors: finding one by tenant and id (new key, then legacy key) and counting a
tenant's anchors for the daily quota."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.credentials import credential_key, legacy_credential_key
from store.models import CredentialAnchorRecord


async def find(
    session: AsyncSession, tenant: str, credential_id: str
) -> CredentialAnchorRecord | None:
    """The tenant's anchor for ``credential_id``: under today's key, else under the legacy key
    when that record is really this tenant's and this id (the legacy key alone is ambiguous)."""
    row = await session.get(CredentialAnchorRecord, credential_key(tenant, credential_id))
    if row is not None:
        return row
    legacy = await session.get(CredentialAnchorRecord, legacy_credential_key(tenant, credential_id))
    if legacy is not None and (legacy.tenant, legacy.credential_id) == (tenant, credential_id):
        return legacy
    return None


async def made_since(session: AsyncSession, tenant: str, since: datetime) -> tuple[int, datetime]:
    """How many anchors the tenant asked for since ``since``, and the oldest of them (when the
    window frees up again); ``(0, since)`` when none."""
    count, oldest = (
        await session.execute(
            select(func.count(), func.min(CredentialAnchorRecord.created_at)).where(
                CredentialAnchorRecord.tenant == tenant,
                CredentialAnchorRecord.created_at >= since,
            )
        )
    ).one()
    return int(count), oldest or since
