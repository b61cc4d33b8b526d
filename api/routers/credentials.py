"""Credential anchoring: ``POST /api/v1/credentials/{credential_id}/anchor`` answers at once (202)
and ``CredentialAnchor`` writes the hash and CID on the registry; ``GET`` tells where it stands.

Idempotent by credential id within the tenant: the same id with the same hash and CID returns the
existing anchor; with another hash or CID it is a 409 (an anchor is final on chain).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from api.deps import CurrentUser, ReadSessionsDep, SessionFactoryDep, SettingsDep, TemporalDep
from api.errors import error_responses
from api.job_options import start_kwargs
from api.workflow_starts import nothing_started
from domain.credentials import (
    CREDENTIAL_ID,
    DATA_HASH,
    AnchorConfig,
    AnchorInput,
    AnchorStatus,
    BatcherInput,
    anchor_calldata,
    credential_key,
    validate_cid,
)
from domain.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable
from domain.queues import workflow_queue
from domain.search import OperationKind, start_attributes
from runtime.logging import get_logger
from runtime.settings import Settings
from store.models import CredentialAnchorRecord

log = get_logger("api.credentials")
router = APIRouter(prefix="/api/v1/credentials", tags=["credentials"])
CredentialId = Annotated[str, Path(pattern=CREDENTIAL_ID, max_length=128)]


class AnchorBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data_hash: str = Field(
        description="0x + 64 hex: the credential's hash", examples=["0x" + "ab" * 32]
    )
    ipfs_cid: str = Field(
        max_length=128,
        description="CIDv0 (Qm…) or base32 CIDv1 (b…)",
        examples=["bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"],
    )

    @field_validator("data_hash")
    @classmethod
    def _hash(cls, value: str) -> str:
        if not DATA_HASH.fullmatch(value):
            raise ValueError("must be 0x followed by 64 hex digits")
        if int(value, 16) == 0:
            raise ValueError("must not be zero")
        return value.lower()

    @field_validator("ipfs_cid")
    @classmethod
    def _cid(cls, value: str) -> str:
        return validate_cid(value)


class SingleAnchorBody(AnchorBody):
    batch: bool | None = Field(
        default=None,
        description="anchor in the next Merkle batch; default CREDENTIAL_ANCHOR_BATCH_DEFAULT",
    )


class BatchItem(AnchorBody):
    credential_id: str = Field(pattern=CREDENTIAL_ID, max_length=128)


class BatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[BatchItem] = Field(min_length=1, max_length=1000)


class BatchItemResult(BaseModel):
    credential_id: str
    anchor: AnchorView | None = None
    error: dict[str, str] | None = None


class AnchorView(BaseModel):
    credential_id: str
    status: str
    data_hash: str
    ipfs_cid: str
    tx_hash: str | None
    block: int | None
    error: str | None
    workflow_id: str
    registry: str
    mode: str
    #: batch mode: the Merkle root anchored (registry.rootOf) and this credential's proof
    batch_root: str | None
    proof: list[str] | None
    created_at: datetime
    updated_at: datetime


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


async def forget(sessions: async_sessionmaker[AsyncSession], keys: list[str]) -> None:
    async with sessions.begin() as session:
        for key in keys:
            stale = await session.get(CredentialAnchorRecord, key)
            if stale is not None:
                await session.delete(stale)


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


@router.post(
    "/{credential_id}/anchor",
    status_code=202,
    response_model=AnchorView,
    responses=error_responses(401, 409, 422, 503),
)
async def anchor(
    credential_id: CredentialId,
    body: SingleAnchorBody,
    principal: CurrentUser,
    settings: SettingsDep,
    sessions: SessionFactoryDep,
    temporal: TemporalDep,
) -> AnchorView:
    """Anchor without waiting: 202 with ``status: pending``; poll the GET."""
    key = credential_key(principal.tenant, credential_id)
    batch = settings.credential_anchor_batch_default if body.batch is None else body.batch
    async with sessions.begin() as session:
        row = await session.get(CredentialAnchorRecord, key)
        if row is not None:
            if (row.data_hash, row.ipfs_cid) != (body.data_hash, body.ipfs_cid):
                raise Conflict(
                    "this credential id is anchored with another hash or CID; an anchor is final",
                    field="credential_id",
                )
            return view(row, settings)
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
    request = AnchorInput(
        credential_id=credential_id,
        credential_key=key,
        tenant=principal.tenant,
        data_hash=body.data_hash,
        ipfs_cid=body.ipfs_cid,
        registry=settings.credential_registry_address,
        calldata=anchor_calldata(key, body.data_hash, body.ipfs_cid),
        task_queue_prefix=settings.task_queue_prefix,
        config=anchor_config(settings),
    )
    start = partial(
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
        await start()
    except (RPCError, RuntimeError) as exc:
        if await nothing_started(temporal, row.workflow_id, exc, retry=start):
            await forget(sessions, [key])
            raise ServiceUnavailable(
                "the workflow service is unavailable; nothing was anchored or recorded"
            ) from exc
        # else it may have started: the row stays pending
    log.info("credential anchor requested", credential_id=credential_id, tenant=principal.tenant)
    return view(row, settings)


@router.post(
    "/anchor/batch",
    status_code=202,
    response_model=list[BatchItemResult],
    responses=error_responses(401, 422, 503),
)
async def anchor_batch(
    body: BatchBody,
    principal: CurrentUser,
    settings: SettingsDep,
    sessions: SessionFactoryDep,
    temporal: TemporalDep,
) -> list[BatchItemResult]:
    """Up to 1,000 credentials, anchored in Merkle batches. Each is answered like the single
    route: new ones pending, the same ones as they stand, another hash for an id a 409 item."""
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
        for item in body.items:
            key = credential_key(principal.tenant, item.credential_id)
            row = await session.get(CredentialAnchorRecord, key)
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


@router.get(
    "/{credential_id}/anchor", response_model=AnchorView, responses=error_responses(401, 404, 422)
)
async def anchor_status(
    credential_id: CredentialId,
    principal: CurrentUser,
    settings: SettingsDep,
    reads: ReadSessionsDep,
) -> AnchorView:
    """``pending`` until the transaction has its confirmations, then ``confirmed`` (tx, block),
    or ``failed`` with the error."""
    async with reads() as session:
        row = await session.get(
            CredentialAnchorRecord, credential_key(principal.tenant, credential_id)
        )
    if row is None:
        raise NotFound(f"no anchor for credential {credential_id}", field="credential_id")
    return view(row, settings)
