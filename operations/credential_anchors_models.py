"""The request and answer models of credential anchoring (single and batch), formerly in
``api/routers/credentials.py``. Their OpenAPI component names are unqualified (``BatchItem`` is
told from ``api.routers.job_starts.BatchItem`` as ``BatchItem-Input``), so the move kept them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.callbacks import CallbackView
from api.timestamps import UtcDateTime
from domain.credentials import CREDENTIAL_ID, DATA_HASH, validate_cid


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
    callback_url: str | None = Field(
        default=None,
        max_length=2000,
        description="where credential.confirmed / credential.failed is sent, signed (single "
        "anchors only: with it the default is not to batch)",
        examples=["https://issuer.example/settle-callback"],
    )


class BatchItem(AnchorBody):
    credential_id: str = Field(pattern=CREDENTIAL_ID, max_length=128)


class BatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[BatchItem] = Field(min_length=1, max_length=1000)


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
    created_at: UtcDateTime
    updated_at: UtcDateTime
    #: with a callback_url, on the answer that created the anchor: its endpoint and secret
    callback: CallbackView | None = None


class BatchItemResult(BaseModel):
    credential_id: str
    anchor: AnchorView | None = None
    error: dict[str, str] | None = None
