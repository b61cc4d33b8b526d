"""Credential anchoring (single and batch): start, get and retry.

``POST /api/v1/credentials/{credential_id}/anchor``, ``POST /api/v1/credentials/anchor/batch``,
their ``GET`` and ``.../anchor/retry``, and ``POST /api/v1/jobs`` (``credential_anchor``,
``credential_anchor_batch``) all call these functions.

Idempotent by credential id within the tenant: the same id with the same hash and CID returns the
existing anchor; with another hash or CID it is a 409 (an anchor is final on chain). A tenant may
ask for ``CREDENTIAL_ANCHOR_DAILY_QUOTA_PER_TENANT`` new anchors in any 24 hours; past it the
answer is 429 with ``Retry-After`` and nothing is recorded or started.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowQueryFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from api import abuse
from api.auth import Principal
from api.callbacks import FIELD, CallbackView, callback_endpoint, checked_callback
from api.job_options import start_kwargs
from api.workflow_starts import nothing_started
from domain.credentials import (
    AnchorConfig,
    AnchorInput,
    AnchorStatus,
    BatcherInput,
    anchor_calldata,
    credential_key,
)
from domain.errors import Conflict, InvalidInput, NotFound, QuotaExceeded, ServiceUnavailable
from domain.events import EventType
from domain.queues import workflow_queue
from domain.search import OperationKind, start_attributes
from operations.context import Context
from operations.credential_anchors_models import (
    AnchorView,
    BatchBody,
    BatchItemResult,
    SingleAnchorBody,
)
from runtime.logging import get_logger
from runtime.settings import Settings
from runtime.temporal import temporal_unreachable
from store import abuse as abuse_counters
from store import credentials as anchors
from store.models import CredentialAnchorRecord, WebhookEndpoint

#: the logger's name from when this lived in the router: the log lines are unchanged
log = get_logger("api.credentials")


def workflow_id_for(key: str) -> str:
    return f"credential-anchor-{key}"


def batcher_id(settings: Settings) -> str:
    return f"anchor-batcher-{settings.task_queue_prefix.rstrip('-')}"


def anchor_config(settings: Settings) -> AnchorConfig:
    return AnchorConfig(
        confirmations=settings.evm_confirmations,
        use_safe_tag=settings.evm_use_safe_tag,
        max_attempts=settings.credential_anchor_max_attempts,
        retry_initial_seconds=settings.credential_anchor_retry_initial_seconds,
    )


async def signal_batcher(temporal: Client, settings: Settings, keys: list[str]) -> None:
    """Signal-with-start: the batcher is started by the first credential that needs it. The
    settings go with every signal too, so a running batcher follows a changed registry address,
    batch size or wait from its next batch on."""
    batcher = BatcherInput(
        registry=settings.credential_registry_address,
        max_size=settings.credential_anchor_batch_size,
        max_wait_seconds=settings.credential_anchor_batch_wait_seconds,
        config=anchor_config(settings),
        task_queue_prefix=settings.task_queue_prefix,
    )
    await temporal.start_workflow(
        "AnchorBatcher",
        batcher,
        id=batcher_id(settings),
        task_queue=workflow_queue(settings.task_queue_prefix),
        start_signal="add_with_settings",
        start_signal_args=[keys, batcher],
    )


def _not_waiting(
    temporal: Client, settings: Settings, keys: list[str]
) -> Callable[[], Awaitable[bool]]:
    """Confirms that a failed signal-with-start did not reach the batcher: none of ``keys`` waits
    in it (or there is no batcher)."""

    async def confirm() -> bool:
        try:
            waiting = await temporal.get_workflow_handle(batcher_id(settings)).query("waiting")
        except RPCError as exc:
            return exc.status == RPCStatusCode.NOT_FOUND
        except (RuntimeError, WorkflowQueryFailedError):
            return False
        return not set(keys) & set(waiting)

    return confirm


async def forget(
    sessions: async_sessionmaker[AsyncSession], keys: list[str], callback_id: str | None = None
) -> None:
    async with sessions.begin() as session:
        for key in keys:
            stale = await session.get(CredentialAnchorRecord, key)
            if stale is not None:
                await session.delete(stale)
        endpoint = await session.get(WebhookEndpoint, callback_id) if callback_id else None
        if endpoint is not None:
            await session.delete(endpoint)


QUOTA_WINDOW = timedelta(days=1)


async def check_quota(
    session: AsyncSession, settings: Settings, tenant: str, new: int, field: str
) -> None:
    """Refuse (429, Retry-After) when ``new`` more anchors would take the tenant past its quota
    for the last 24 hours. Checked in the transaction that records them; two requests racing
    at the edge can each pass it."""
    quota = settings.credential_anchor_daily_quota_per_tenant
    if quota <= 0 or new <= 0:
        return
    now = datetime.now(UTC)
    used, oldest = await anchors.made_since(session, tenant, now - QUOTA_WINDOW)
    if used + new <= quota:
        return
    oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
    retry_after = (
        int((oldest + QUOTA_WINDOW - now).total_seconds()) + 1
        if new <= quota
        else int(QUOTA_WINDOW.total_seconds())
    )
    log.warning("credential anchor quota reached", tenant=tenant, used=used, asked=new)
    raise QuotaExceeded(
        f"this tenant has asked for {used} anchors in the last 24 hours; the quota is {quota} "
        f"(CREDENTIAL_ANCHOR_DAILY_QUOTA_PER_TENANT): nothing was recorded",
        retry_after_seconds=retry_after,
        field=field,
    )


def anchor_request(
    settings: Settings,
    row: CredentialAnchorRecord,
    *,
    attempt: int = 1,
    callback_endpoint_ids: list[str] | None = None,
) -> AnchorInput:
    return AnchorInput(
        credential_id=row.credential_id,
        credential_key=row.credential_key,
        tenant=row.tenant,
        data_hash=row.data_hash,
        ipfs_cid=row.ipfs_cid,
        registry=settings.credential_registry_address,
        calldata=anchor_calldata(row.credential_key, row.data_hash, row.ipfs_cid),
        task_queue_prefix=settings.task_queue_prefix,
        config=anchor_config(settings),
        attempt=attempt,
        callback_endpoint_ids=callback_endpoint_ids or [],
    )


def view(row: CredentialAnchorRecord, settings: Settings) -> AnchorView:
    return AnchorView(
        credential_id=row.credential_id,
        status=row.status,
        data_hash=row.data_hash,
        ipfs_cid=row.ipfs_cid,
        tx_hash=row.tx_hash,
        block=row.block_number,
        error=row.error,
        workflow_id=row.workflow_id,
        registry=settings.credential_registry_address,
        mode=row.mode,
        batch_root=row.batch_root,
        proof=json.loads(row.proof) if row.proof else None,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def start(
    ctx: Context, principal: Principal, credential_id: str, body: SingleAnchorBody
) -> AnchorView:
    """Anchor one credential without waiting: ``status: pending`` (or the anchor as it stands
    when the same id, hash and CID were asked for before)."""
    settings, sessions, temporal = ctx.settings, ctx.sessions, ctx.temporal
    key = credential_key(principal.tenant, credential_id)
    callback_url = await checked_callback(body.callback_url, settings)
    if callback_url and body.batch:
        raise InvalidInput("a callback_url is for single anchors (batch: false)", field=FIELD)
    default = settings.credential_anchor_batch_default and callback_url is None
    batch = default if body.batch is None else body.batch
    callback = None
    async with sessions.begin() as session:
        row = await anchors.find(session, principal.tenant, credential_id)
        if row is not None:
            if (row.data_hash, row.ipfs_cid) != (body.data_hash, body.ipfs_cid):
                raise Conflict(
                    "this credential id is anchored with another hash or CID; an anchor is final",
                    field="credential_id",
                )
            return view(row, settings)
        await check_quota(session, settings, principal.tenant, 1, "credential_id")
        await abuse_counters.take(session, abuse.anchor_request(settings, principal))
        row = CredentialAnchorRecord(
            credential_key=key,
            credential_id=credential_id,
            tenant=principal.tenant,
            requested_by=principal.subject,
            data_hash=body.data_hash,
            ipfs_cid=body.ipfs_cid,
            status=AnchorStatus.PENDING.value,
            workflow_id=batcher_id(settings) if batch else workflow_id_for(key),
            mode="batch" if batch else "single",
        )
        session.add(row)
        if callback_url:
            callback = callback_endpoint(
                principal.tenant,
                callback_url,
                [EventType.CREDENTIAL_CONFIRMED.value, EventType.CREDENTIAL_FAILED.value],
            )
            session.add(callback)
        try:
            await session.flush()
        except IntegrityError as exc:  # the same id, at the same moment
            raise Conflict("this credential id is being anchored", field="credential_id") from exc
    if batch:
        try:
            await signal_batcher(temporal, settings, [key])
        except (RPCError, RuntimeError) as exc:
            confirm = _not_waiting(temporal, settings, [key])
            if await nothing_started(temporal, row.workflow_id, exc, absent=confirm):
                await forget(sessions, [key])
                raise ServiceUnavailable(
                    "the workflow service is unavailable; nothing was anchored or recorded"
                ) from exc
            # else the batcher may have it: the row stays pending
        return view(row, settings)
    request = anchor_request(
        settings, row, callback_endpoint_ids=[callback.id] if callback else None
    )
    start_workflow = partial(
        temporal.start_workflow,
        "CredentialAnchor",
        request,
        id=row.workflow_id,
        task_queue=workflow_queue(settings.task_queue_prefix),
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=start_attributes(
            OperationKind.CREDENTIAL_ANCHOR, principal.tenant, principal.subject
        ),
        **start_kwargs(),
    )
    try:
        await start_workflow()
    except (RPCError, RuntimeError) as exc:
        if await nothing_started(temporal, row.workflow_id, exc, retry=start_workflow):
            await forget(sessions, [key], callback.id if callback else None)
            raise ServiceUnavailable(
                "the workflow service is unavailable; nothing was anchored or recorded"
            ) from exc
        # else it may have started: the row stays pending
    log.info("credential anchor requested", credential_id=credential_id, tenant=principal.tenant)
    answer = view(row, settings)
    if callback is not None:
        answer.callback = CallbackView(endpoint_id=callback.id, secret=callback.secret)
    return answer


async def start_batch(ctx: Context, principal: Principal, body: BatchBody) -> list[BatchItemResult]:
    """Up to 1,000 credentials, anchored in Merkle batches. Each is answered like a single
    anchor: new ones pending, the same ones as they stand, another hash for an id a 409 item."""
    settings, sessions, temporal = ctx.settings, ctx.sessions, ctx.temporal
    seen: set[str] = set()
    for index, item in enumerate(body.items):
        if item.credential_id in seen:
            raise InvalidInput(
                f"credential id {item.credential_id!r} appears twice",
                field=f"items.{index}.credential_id",
            )
        seen.add(item.credential_id)
    results: list[BatchItemResult] = []
    new_keys: list[str] = []
    rows_by_id: dict[str, CredentialAnchorRecord] = {}
    async with sessions.begin() as session:
        found = {
            item.credential_id: await anchors.find(session, principal.tenant, item.credential_id)
            for item in body.items
        }
        await check_quota(
            session, settings, principal.tenant, sum(r is None for r in found.values()), "items"
        )
        if any(r is None for r in found.values()):
            await abuse_counters.take(session, abuse.anchor_request(settings, principal))
        for item in body.items:
            key = credential_key(principal.tenant, item.credential_id)
            row = found[item.credential_id]
            if row is not None:
                if (row.data_hash, row.ipfs_cid) != (item.data_hash, item.ipfs_cid):
                    results.append(
                        BatchItemResult(
                            credential_id=item.credential_id,
                            error={
                                "code": "conflict",
                                "message": "anchored with another hash or CID; an anchor is final",
                            },
                        )
                    )
                    continue
            else:
                row = CredentialAnchorRecord(
                    credential_key=key,
                    credential_id=item.credential_id,
                    tenant=principal.tenant,
                    requested_by=principal.subject,
                    data_hash=item.data_hash,
                    ipfs_cid=item.ipfs_cid,
                    status=AnchorStatus.PENDING.value,
                    workflow_id=batcher_id(settings),
                    mode="batch",
                )
                session.add(row)
                new_keys.append(key)
            results.append(BatchItemResult(credential_id=item.credential_id))
            rows_by_id[item.credential_id] = row
        await session.flush()
        anchored = {cid: view(row, settings) for cid, row in rows_by_id.items()}
    if new_keys:
        try:
            await signal_batcher(temporal, settings, new_keys)
        except (RPCError, RuntimeError) as exc:
            confirm = _not_waiting(temporal, settings, new_keys)
            if await nothing_started(temporal, batcher_id(settings), exc, absent=confirm):
                await forget(sessions, new_keys)
                raise ServiceUnavailable(
                    "the workflow service is unavailable; nothing was anchored or recorded"
                ) from exc
            # else the batcher may have them: the rows stay pending
    for result in results:
        if result.error is None:
            result.anchor = anchored[result.credential_id]
    log.info("credential batch requested", count=len(new_keys), tenant=principal.tenant)
    return results


async def get(ctx: Context, principal: Principal, credential_id: str) -> AnchorView:
    """The caller's tenant's anchor of ``credential_id``; 404 when there is none."""
    async with ctx.reads() as session:
        row = await anchors.find(session, principal.tenant, credential_id)
    if row is None:
        raise NotFound(f"no anchor for credential {credential_id}", field="credential_id")
    return view(row, ctx.settings)


async def retry(ctx: Context, principal: Principal, credential_id: str) -> AnchorView:
    """Anchor a ``failed`` single-mode credential again (see the retry route). 404 without an
    anchor; 409 unless it is ``failed``, when it was batched, abandoned, or its workflow is gone;
    503 when Temporal cannot be reached."""
    settings, temporal, tenant = ctx.settings, ctx.temporal, principal.tenant
    async with ctx.sessions() as session:
        row = await anchors.find(session, tenant, credential_id)
    if row is None:
        raise NotFound(f"no anchor for credential {credential_id}", field="credential_id")
    if row.status != AnchorStatus.FAILED:
        raise Conflict(f"the anchor is {row.status}; only a failed anchor is retried")
    if row.mode != "single":
        raise Conflict(
            "a credential anchored in a batch is not retried on its own; anchor it under a new id"
        )
    if (row.error or "").startswith("abandoned:"):
        raise Conflict("an operator abandoned this anchor; that decision stands")
    handle = temporal.get_workflow_handle(row.workflow_id)
    try:
        described = await handle.describe()
        if described.status == WorkflowExecutionStatus.RUNNING:
            await handle.signal("retry")
        else:  # failed before failed anchors parked: a new run settles the old transaction first
            await temporal.start_workflow(
                "CredentialAnchor",
                anchor_request(settings, row, attempt=2),
                id=row.workflow_id,
                task_queue=workflow_queue(settings.task_queue_prefix),
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                search_attributes=start_attributes(
                    OperationKind.CREDENTIAL_ANCHOR, row.tenant, row.requested_by
                ),
            )
    except (RPCError, RuntimeError) as exc:
        if isinstance(exc, RPCError) and exc.status == RPCStatusCode.NOT_FOUND:
            raise Conflict("the anchor's workflow is gone; anchor it under a new id") from exc
        if not temporal_unreachable(exc):
            raise
        raise ServiceUnavailable(
            "the workflow service is unavailable; nothing was retried"
        ) from exc
    log.info("credential anchor retry requested", credential_id=credential_id, tenant=tenant)
    return view(row, settings)
