"""The jobs operations called directly (``operations/jobs.py``), as the routers call them: through
a :class:`~operations.context.Context` of the running stack's API, with a principal, answering
views and raising :mod:`domain.errors` (which the routers map to status codes)."""

from __future__ import annotations

import pytest

from api.auth import Principal
from domain.errors import InvalidInput, NotFound
from domain.search import OperationKind
from operations import jobs
from operations.context import Context
from operations.jobs_search import JobFilters
from tests.fixtures.stack import Stack, eventually, unique_tenant


def principal(subject: str, tenant: str, *roles: str) -> Principal:
    return Principal(subject=subject, tenant=tenant, roles=frozenset(roles or ("user",)))


async def test_list_read_and_refuse_through_the_operations(stack: Stack) -> None:
    ctx = Context.of_app_state(stack.app.state)
    tenant = unique_tenant()
    created = await stack.api.post(
        "/api/v1/deposit/intent/create",
        json={"amount": "5.00", "chain": "base"},
        headers=stack.auth("olga", tenant),
    )
    assert created.status_code == 201, created.text
    workflow_id = created.json()["workflow_id"]
    admin, olga = principal("ops", tenant, "admin"), principal("olga", tenant)

    async def listed() -> list[str]:
        page = await jobs.list_jobs(ctx, admin, JobFilters(), 50, None)
        return [job.id for job in page.items]

    await eventually(listed, lambda ids: ids == [workflow_id], what=f"{workflow_id} listed")
    page = await jobs.list_jobs(
        ctx, admin, JobFilters(kind=OperationKind.DEPOSIT_WATCH, user="olga"), 50, None
    )
    assert [(j.id, j.tenant, j.user, j.job_url) for j in page.items] == [
        (workflow_id, tenant, "olga", f"/api/v1/jobs/{workflow_id}")
    ]
    assert page.next_cursor is None

    view = await jobs.get_job(ctx, admin, workflow_id)
    assert (view.id, view.kind, view.temporal_status) == (workflow_id, "deposit_watch", "running")
    assert view.input is not None  # an admin reads the input
    assert view.web_ui_url.endswith(f"/workflows/{workflow_id}")
    own = await jobs.get_job(ctx, olga, workflow_id)
    assert own.id == workflow_id and own.input is None  # personal data: admins only

    with pytest.raises(InvalidInput) as malformed:  # the route's 422 naming ``cursor``
        await jobs.list_jobs(ctx, admin, JobFilters(), 50, "AAAA" + "A" * 40)
    assert malformed.value.field == "cursor" and malformed.value.status_code == 422
    with pytest.raises(NotFound):  # another tenant's job does not exist for the caller
        await jobs.get_job(ctx, principal("ops", unique_tenant(), "admin"), workflow_id)
