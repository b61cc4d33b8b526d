"""Start any operation as a job: ``POST /api/v1/jobs`` and ``POST /api/v1/jobs/batch``.

The queue service's ``queue.add(type, data, {priority, delay})``. ``data`` is validated against
that type's request model, then the job goes through the operation's module in ``operations/``,
the one its own route calls (same database rows, idempotency, permissions and workflow id), with
the options as Temporal's start delay and priority key. A batch is validated as a whole first:
one bad job and nothing starts.

Types: ``mpesa_deposit``, ``deposit_intent``, ``ticket_purchase``, ``ticket_refund`` and
``ticket_transfer`` (``data`` is the route's body plus ``purchase_id``), ``credential_anchor``
(the body plus ``credential_id``) and ``credential_anchor_batch`` (the batch route's body).
Batch-mode anchors join the deployment's one ``AnchorBatcher``, which a job cannot delay or
reprioritise for everyone else: options with them are a 422 naming ``options``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.auth import Principal
from api.deps import (
    CurrentUser,
    EvmDep,
    MetricsDep,
    ReadSessionsDep,
    SessionFactoryDep,
    SettingsDep,
    TemporalDep,
)
from api.errors import error_responses
from api.job_options import StartOptions, starting_with
from api.metrics import ApiMetrics
from domain.credentials import CREDENTIAL_ID
from domain.errors import InvalidInput, NotFound, SettleError
from operations import (
    credential_anchors,
    credential_anchors_models,
    deposit_intents,
    mpesa_deposits,
    ticket_purchases,
    ticket_refunds,
    ticket_transfers,
    tickets_common,
)
from operations.context import Context
from operations.deposit_intents_models import CreateIntent
from operations.mpesa_deposits_models import InitiateDeposit
from providers.evm import EvmClient
from runtime.settings import Settings

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])


class TicketRefundJob(ticket_refunds.RefundBody):
    """``POST /api/v1/tickets/{purchase_id}/refund`` as a job."""

    purchase_id: str = Field(max_length=64)


class TicketTransferJob(ticket_transfers.TransferBody):
    """``POST /api/v1/tickets/{purchase_id}/transfer`` as a job."""

    purchase_id: str = Field(max_length=64)


class CredentialAnchorJob(credential_anchors_models.SingleAnchorBody):
    """``POST /api/v1/credentials/{credential_id}/anchor`` as a job."""

    credential_id: str = Field(pattern=CREDENTIAL_ID, max_length=128)


JobType = Literal[
    "mpesa_deposit",
    "deposit_intent",
    "ticket_purchase",
    "ticket_refund",
    "ticket_transfer",
    "credential_anchor",
    "credential_anchor_batch",
]
MODELS: dict[str, type[BaseModel]] = {
    "mpesa_deposit": InitiateDeposit,
    "deposit_intent": CreateIntent,
    "ticket_purchase": ticket_purchases.PurchaseBody,
    "ticket_refund": TicketRefundJob,
    "ticket_transfer": TicketTransferJob,
    "credential_anchor": CredentialAnchorJob,
    "credential_anchor_batch": credential_anchors_models.BatchBody,
}
MAX_BATCH = 1000


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: JobType
    data: dict[str, Any] = Field(
        description="the body the operation's own route takes (e.g. POST /api/v1/deposit/initiate)"
    )
    options: StartOptions = Field(default_factory=StartOptions)
    #: makes a retried request start nothing new (mpesa_deposit and ticket_purchase)
    idempotency_key: str | None = Field(default=None, max_length=255)


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jobs: list[JobRequest] = Field(min_length=1, max_length=MAX_BATCH)


class JobStarted(BaseModel):
    type: str
    id: str
    workflow_id: str
    status: str
    status_url: str
    job_url: str
    #: ``credential_anchor_batch``: each credential's answer, as the batch route gives it
    results: list[credential_anchors_models.BatchItemResult] | None = None


class BatchItem(BaseModel):
    index: int
    job: JobStarted | None = None
    error: dict[str, Any] | None = None


@dataclass
class Deps:
    """What the operation routes need, gathered once per request."""

    principal: Principal
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    temporal: Client
    metrics: ApiMetrics
    evm: EvmClient
    request: Request
    reads: async_sessionmaker[AsyncSession]
    idempotency_key: str | None


def parse_data(job: JobRequest, prefix: tuple[Any, ...]) -> BaseModel:
    """The job's data as its type's model; errors point at ``data.<field>`` of this job."""
    try:
        return MODELS[job.type].model_validate(job.data)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": (*prefix, "data", *e["loc"])} for e in exc.errors()]
        ) from exc


def _batched(body: BaseModel, settings: Settings) -> bool:
    """Whether the job's credentials go to the shared ``AnchorBatcher``."""
    if isinstance(body, credential_anchors_models.BatchBody):
        return True
    if isinstance(body, CredentialAnchorJob):
        return settings.credential_anchor_batch_default if body.batch is None else body.batch
    return False


def check_options(job: JobRequest, body: BaseModel, settings: Settings, prefix: str) -> None:
    """Refuse a delay or priority for batch-mode anchors (see the module's docstring)."""
    options = job.options
    if (options.delay or options.priority is not None) and _batched(body, settings):
        raise InvalidInput(
            "delay and priority do not apply to batch-mode anchors: they join the shared "
            "anchor batcher (send them with batch=false, or without options)",
            field=f"{prefix}options",
        )


async def _run(job: JobRequest, body: BaseModel, d: Deps) -> JobStarted:
    """The operation's start function (``operations/``), called as its route calls it."""
    key = job.idempotency_key or d.idempotency_key
    if isinstance(body, InitiateDeposit):
        ctx = Context.of_app_state(d.request.app.state)
        accepted: Any = await mpesa_deposits.start(ctx, d.principal, body, key)
    elif isinstance(body, CreateIntent):
        ctx = Context.of_app_state(d.request.app.state)
        accepted = await deposit_intents.start(ctx, d.principal, body)
    elif isinstance(body, ticket_purchases.PurchaseBody):
        accepted = await ticket_purchases.start_purchase(
            Context.of_app_state(d.request.app.state), d.principal, body, key
        )
    elif isinstance(body, TicketRefundJob | TicketTransferJob):
        accepted = await _ticket_job(body, d, key)
    elif isinstance(body, CredentialAnchorJob):
        single = credential_anchors_models.SingleAnchorBody.model_validate(
            body.model_dump(exclude={"credential_id"})
        )
        ctx = Context.of_app_state(d.request.app.state)
        view = await credential_anchors.start(ctx, d.principal, body.credential_id, single)
        return JobStarted(
            type=job.type,
            id=view.credential_id,
            workflow_id=view.workflow_id,
            status=view.status,
            status_url=f"/api/v1/credentials/{view.credential_id}",
            job_url=f"/api/v1/jobs/{view.workflow_id}",
        )
    else:
        assert isinstance(body, credential_anchors_models.BatchBody)
        ctx = Context.of_app_state(d.request.app.state)
        results = await credential_anchors.start_batch(ctx, d.principal, body)
        batcher = credential_anchors.batcher_id(d.settings)
        return JobStarted(
            type=job.type,
            id=batcher,
            workflow_id=batcher,
            status="pending",
            status_url="/api/v1/credentials/{credential_id}",
            job_url=f"/api/v1/jobs/{batcher}",
            results=results,
        )
    return JobStarted(
        type=job.type,
        id=accepted.id,
        workflow_id=accepted.workflow_id,
        status=accepted.status,
        status_url=getattr(accepted, "status_url", f"/api/v1/deposit/intent/{accepted.id}"),
        job_url=f"/api/v1/jobs/{accepted.workflow_id}",
    )


async def _ticket_job(
    body: TicketRefundJob | TicketTransferJob, d: Deps, key: str | None
) -> tickets_common.Accepted:
    fields = body.model_dump(exclude={"purchase_id"})
    ctx = Context.of_app_state(d.request.app.state)
    try:
        if isinstance(body, TicketRefundJob):
            return await ticket_refunds.refund(
                ctx, d.principal, body.purchase_id,
                ticket_refunds.RefundBody.model_validate(fields), key,
            )  # fmt: skip
        return await ticket_transfers.transfer(
            ctx, d.principal, body.purchase_id,
            ticket_transfers.TransferBody.model_validate(fields), key,
        )  # fmt: skip
    except NotFound as exc:  # the route's path names the purchase; here it is in data
        exc.field = exc.field or "purchase_id"
        raise


async def start(job: JobRequest, body: BaseModel, d: Deps) -> JobStarted:
    with starting_with(job.options):
        try:
            return await _run(job, body, d)
        except SettleError as exc:
            if exc.field:  # the operation's own checks name its body's fields
                exc.field = f"data.{exc.field}"
            raise


@router.post(
    "",
    status_code=202,
    response_model=JobStarted,
    responses=error_responses(401, 409, 422, 503),
)
async def create_job(
    job: JobRequest,
    principal: CurrentUser,
    settings: SettingsDep,
    sessions: SessionFactoryDep,
    temporal: TemporalDep,
    metrics: MetricsDep,
    evm: EvmDep,
    request: Request,
    reads: ReadSessionsDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)] = None,
) -> JobStarted:
    """Validate ``data`` against the type's model and start its workflow."""
    body = parse_data(job, ("body",))
    check_options(job, body, settings, "")
    deps = Deps(
        principal, settings, sessions, temporal, metrics, evm, request, reads, idempotency_key
    )
    return await start(job, body, deps)


@router.post(
    "/batch",
    status_code=202,
    response_model=list[BatchItem],
    responses=error_responses(401, 422),
)
async def create_jobs(
    batch: BatchRequest,
    principal: CurrentUser,
    settings: SettingsDep,
    sessions: SessionFactoryDep,
    temporal: TemporalDep,
    metrics: MetricsDep,
    evm: EvmDep,
    request: Request,
    reads: ReadSessionsDep,
) -> list[BatchItem]:
    """Up to 1,000 jobs. All are validated before any starts; then each is started in order and
    reported with its job or its error (e.g. a seat already taken), so a retry of the batch with
    the same idempotency keys starts only what is missing."""
    bodies = [parse_data(job, ("body", "jobs", i)) for i, job in enumerate(batch.jobs)]
    for i, (job, body) in enumerate(zip(batch.jobs, bodies, strict=True)):
        check_options(job, body, settings, f"jobs.{i}.")
    deps = Deps(principal, settings, sessions, temporal, metrics, evm, request, reads, None)
    items: list[BatchItem] = []
    for index, (job, body) in enumerate(zip(batch.jobs, bodies, strict=True)):
        try:
            items.append(BatchItem(index=index, job=await start(job, body, deps)))
        except SettleError as exc:
            error = {"status": exc.status_code, "code": exc.code, "message": exc.message}
            if exc.field:
                error["field"] = exc.field
            items.append(BatchItem(index=index, error=error))
    return items
