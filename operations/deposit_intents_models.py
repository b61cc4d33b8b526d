"""Requests and answers of the deposit intent operations (:mod:`operations.deposit_intents`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from api.timestamps import UtcDateTime


class CreateIntent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: StrictStr = Field(
        description="USDC as a decimal string, at most 6 places", examples=["25.50"]
    )
    chain: StrictStr = Field(examples=["base"])


class TransferView(BaseModel):
    # the tickets' TransferView shares the name, so FastAPI names both components by module:
    # pinned to the module it was defined in, its component stays
    # ``api__routers__intents__TransferView`` (the OpenAPI is unchanged by the move)
    __module__ = "api.routers.intents"

    tx_hash: str
    log_index: int
    block_number: int
    from_address: str
    amount: str
    status: str


class IntentView(BaseModel):
    id: str
    workflow_id: str
    chain: str
    address: str
    amount: str
    amount_minor: int
    received: str
    received_minor: int
    status: str
    late_transfer_seen: bool
    expires_at: UtcDateTime
    created_at: UtcDateTime
    status_url: str
    transfers: list[TransferView] = []
    checks: int | None = None
    #: the watch is parked: a credit failed (``error``); retry or abandon it as a job
    needs_attention: bool = False
    error: str | None = None


class CreditLate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tx_hash: StrictStr = Field(pattern=r"^0x[0-9a-fA-F]{64}$", description="the transfer's tx")
    log_index: StrictInt = Field(ge=0, le=2**31 - 1, description="its log index in that tx")


class LateCreditView(BaseModel):
    intent_id: str
    tx_hash: str
    log_index: int
    #: crediting (a job checks it on chain, then credits), or already_credited (nothing changed)
    status: str
    workflow_id: str
    job_url: str
