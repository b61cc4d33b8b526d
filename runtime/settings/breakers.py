"""Circuit breakers per provider (Daraja, Stripe, EVM, Solana, SMTP): when to open, how often to
probe. Counted in PostgreSQL by every worker together (``circuit_breakers``)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class BreakerSettings(BaseModel):
    #: off: provider failures are only retried, no queue is ever held by a breaker
    breaker_enabled: bool = True
    #: opens after this many provider-unavailable failures in a row (any worker)
    breaker_consecutive_failures: int = Field(default=5, ge=1)
    #: or when, within one window of this many seconds and over at least the minimum of calls,
    #: this share of the calls failed as unavailable
    breaker_window_seconds: float = Field(default=60.0, gt=0)
    breaker_window_min_calls: int = Field(default=20, ge=1)
    breaker_error_rate: float = Field(default=0.5, gt=0, le=1)
    #: while open, one worker asks the provider every so often whether it answers again
    breaker_probe_interval_seconds: float = Field(default=30.0, gt=0)
