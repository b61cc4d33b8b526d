"""Credential anchoring: ``POST /api/v1/credentials/{credential_id}/anchor`` answers at once (202)
and ``CredentialAnchor`` writes the hash and CID on the registry; ``GET`` tells where it stands.

Idempotent by credential id within the tenant: the same id with the same hash and CID returns the
existing anchor; with another hash or CID it is a 409 (an anchor is final on chain). A tenant may
ask for ``CREDENTIAL_ANCHOR_DAILY_QUOTA_PER_TENANT`` new anchors in any 24 hours; past it the
answer is 429 with ``Retry-After`` and nothing is recorded or started. A failed anchor is retried
with ``POST .../anchor/retry`` (or ``/api/v1/jobs/{workflow id}/retry``).

The routes only translate HTTP; the operations are in :mod:`operations.credential_anchors`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api.deps import ContextDep, CurrentUser
from api.errors import error_responses
from domain.credentials import CREDENTIAL_ID
from operations import credential_anchors
from operations.credential_anchors_models import (
    AnchorView,
    BatchBody,
    BatchItemResult,
    SingleAnchorBody,
)

router = APIRouter(prefix="/api/v1/credentials", tags=["credentials"])
CredentialId = Annotated[str, Path(pattern=CREDENTIAL_ID, max_length=128)]


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
    ctx: ContextDep,
) -> AnchorView:
    """Anchor without waiting: 202 with ``status: pending``; poll the GET."""
    return await credential_anchors.start(ctx, principal, credential_id, body)


@router.post(
    "/anchor/batch",
    status_code=202,
    response_model=list[BatchItemResult],
    responses=error_responses(401, 422, 503),
)
async def anchor_batch(
    body: BatchBody,
    principal: CurrentUser,
    ctx: ContextDep,
) -> list[BatchItemResult]:
    """Up to 1,000 credentials, anchored in Merkle batches. Each is answered like the single
    route: new ones pending, the same ones as they stand, another hash for an id a 409 item."""
    return await credential_anchors.start_batch(ctx, principal, body)


@router.get(
    "/{credential_id}/anchor", response_model=AnchorView, responses=error_responses(401, 404, 422)
)
async def anchor_status(
    credential_id: CredentialId,
    principal: CurrentUser,
    ctx: ContextDep,
) -> AnchorView:
    """``pending`` until the transaction has its confirmations, then ``confirmed`` (tx, block),
    or ``failed`` with the error."""
    return await credential_anchors.get(ctx, principal, credential_id)


@router.post(
    "/{credential_id}/anchor/retry",
    status_code=202,
    response_model=AnchorView,
    responses=error_responses(401, 404, 409, 422, 503),
)
async def retry_anchor(
    credential_id: CredentialId,
    principal: CurrentUser,
    ctx: ContextDep,
) -> AnchorView:
    """Anchor a ``failed`` credential again: a new transaction under the next attempt's key (the
    failed one was cancelled, or followed when it landed). Same as ``POST /api/v1/jobs/{workflow
    id}/retry`` on the parked anchor; an anchor that failed before anchors could park is started
    again, settling its old transaction first. 409 unless the anchor is ``failed``, or when an
    operator abandoned it."""
    return await credential_anchors.retry(ctx, principal, credential_id)
