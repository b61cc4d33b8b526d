"""Finding jobs across kinds: the visibility query behind ``GET /api/v1/jobs``.

Every filter becomes one clause of a Temporal visibility query, always inside the caller's scope
(:func:`api.jobs_lookup.tenant_query`: a ``user`` their own jobs, ``venue_admin`` and ``admin``
their tenant's, ``platform_admin`` every tenant's). The same query works in the CLI:

    temporal workflow list --query 'SettleTenant="t1" AND SettleRefs="ws_CO_0112..."'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api import cursors
from api.auth import Principal
from api.jobs_lookup import JobRef, quote, raise_if_unreachable, tenant_query
from domain.errors import InvalidInput
from domain.search import OperationKind, OperationStatus
from runtime.settings import Settings

#: what a ``user``, ``tenant`` or ``ref`` filter may be (no quotes or backslashes; see quote())
FILTER_VALUE = r"^[A-Za-z0-9][A-Za-z0-9._:@|+=/-]{0,254}$"


@dataclass(frozen=True)
class JobFilters:
    kind: OperationKind | None = None
    status: OperationStatus | None = None
    user: str | None = None
    tenant: str | None = None
    ref: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def clauses(self) -> list[str]:
        clauses: list[str] = []
        if self.kind is not None:
            clauses.append(f"SettleKind = {quote(self.kind.value)}")
        if self.status is not None:
            clauses.append(f"SettleStatus = {quote(self.status.value)}")
        if self.user is not None:
            clauses.append(f"SettleUser = {quote(self.user)}")
        if self.tenant is not None:
            clauses.append(f"SettleTenant = {quote(self.tenant)}")
        if self.ref is not None:
            clauses.append(f"SettleRefs = {quote(self.ref)}")
        if self.since is not None:
            clauses.append(f"StartTime >= {quote(_instant(self.since))}")
        if self.until is not None:
            clauses.append(f"StartTime < {quote(_instant(self.until))}")
        return clauses

    def check(self) -> None:
        if self.since and self.until and self.since >= self.until:
            raise InvalidInput("since must be before until", field="since")


def _instant(value: datetime) -> str:
    """RFC 3339 in UTC, as visibility compares ``StartTime``; a naive time is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class JobsPage:
    jobs: list[JobRef]
    next_cursor: str | None


async def find_jobs(
    client: Client,
    settings: Settings,
    principal: Principal,
    filters: JobFilters,
    limit: int,
    cursor: str | None,
) -> JobsPage:
    """One page of the caller's jobs matching ``filters``, newest first."""
    filters.check()
    query = tenant_query(principal, *filters.clauses())
    listing = client.list_workflows(
        query, page_size=limit, next_page_token=cursors.decode(settings, query, cursor)
    )
    try:
        await listing.fetch_next_page(page_size=limit)
    except (RPCError, RuntimeError) as exc:
        if isinstance(exc, RPCError) and exc.status == RPCStatusCode.INVALID_ARGUMENT and cursor:
            raise InvalidInput(cursors.NOT_OURS, field="cursor") from exc
        raise_if_unreachable(exc)
        raise
    jobs = [JobRef.of(w) for w in listing.current_page or []]
    return JobsPage(jobs, cursors.encode(settings, query, listing.next_page_token))
