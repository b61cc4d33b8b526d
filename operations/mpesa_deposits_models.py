"""Requests and answers of the M-Pesa deposit operations (:mod:`operations.mpesa_deposits`)."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from api.timestamps import UtcDateTime
from domain.addresses import normalize_evm_address
from domain.fx import FxQuote
from domain.money import Currency, format_minor

PHONE_PATTERN = r"^254(7|1)\d{8}$"


def as_utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class InitiateDeposit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: str = Field(
        pattern=PHONE_PATTERN,
        description="Safaricom number in international format, e.g. 254712345678",
        examples=["254708374149"],
    )
    amount: StrictInt = Field(description="whole Kenyan shillings", examples=[150])
    wallet_address: str | None = Field(
        default=None,
        description="EVM address receiving the USDC; defaults to the caller's registered wallet",
        examples=["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"],
    )

    @field_validator("wallet_address")
    @classmethod
    def _evm(cls, value: str | None) -> str | None:
        return normalize_evm_address(value) if value is not None else None


class QuoteView(BaseModel):
    """The KES -> USDC quote fixed at initiation: honoured if M-Pesa confirms the payment before
    ``expires_at``; later the rate of that moment applies only within FX_MAX_DEVIATION_PERCENT
    of this one, else the deposit waits for an operator."""

    kes_per_usdc: str
    usdc_amount: str
    usdc_minor: int
    quoted_at: UtcDateTime
    expires_at: UtcDateTime

    @classmethod
    def of(cls, quote: FxQuote) -> QuoteView:
        assert quote.quoted_at is not None and quote.expires_at is not None
        return cls(
            kes_per_usdc=quote.kes_per_usdc,
            usdc_amount=format_minor(quote.usdc_minor, Currency.USDC),
            usdc_minor=quote.usdc_minor,
            quoted_at=as_utc(quote.quoted_at),
            expires_at=as_utc(quote.expires_at),
        )


class DepositAccepted(BaseModel):
    id: str
    workflow_id: str
    status: str
    status_url: str
    web_ui_url: str
    quote: QuoteView | None = None


class DepositView(BaseModel):
    id: str
    workflow_id: str
    status: str
    step: str | None = None
    phone: str
    amount: str
    amount_minor: int
    currency: str
    checkout_request_id: str | None
    receipt: str | None
    result_code: int | None
    result_desc: str | None
    failure_reason: str | None
    error: str | None = None
    wallet_address: str | None = None
    usdc_amount: str | None = None
    usdc_minor: int | None = None
    fx_kes_per_usdc: str | None = None
    usdc_tx_hash: str | None = None
    quote: QuoteView | None = None
    created_at: UtcDateTime
    updated_at: UtcDateTime
    web_ui_url: str
