"""Rate limits: the server-side task-queue limit each provider's activity queue returns to on reset.

Empty means no limit of Settle's own (the server's default). Set on the Temporal server with
``UpdateTaskQueueConfig``, so every worker obeys them; ``POST /api/v1/rate-limits/reset/{key}``
applies them, and resuming a paused queue or a stopped provider restores them.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class RateLimitSettings(BaseModel):
    #: Stripe calls (payments, refunds) per second; Stripe allows 25/s in test mode
    rate_limit_stripe_per_second: float | None = Field(default=25.0, ge=0)
    #: M-Pesa Daraja calls (STK push, STK query) per second
    rate_limit_mpesa_per_second: float | None = Field(default=10.0, ge=0)
    #: Solana transactions (mints, transfers) per second
    rate_limit_solana_per_second: float | None = Field(default=20.0, ge=0)
    #: EVM transactions from the treasury wallet per second
    rate_limit_evm_write_per_second: float | None = Field(default=5.0, ge=0)
    #: notifications (SMTP emails, outbound webhooks: the notify queue) per second
    rate_limit_smtp_per_second: float | None = Field(default=10.0, ge=0)
