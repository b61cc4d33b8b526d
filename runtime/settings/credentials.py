"""Credential anchoring: the registry queue's concurrency and rate limit, and its retries."""

from __future__ import annotations

from pydantic import BaseModel, Field


class CredentialSettings(BaseModel):
    #: anchor submissions in flight at once across every worker (a lease on one of this many
    #: rows in PostgreSQL each); also the `credentials` tasks one worker takes at once. At least
    #: the rate limit times a submit's duration, or the rate is never reached: 5 slots of 0.6 s
    #: submits held 200 anchors at 7.7/s under the 10/s limit, 10 slots gave 9.1/s
    credential_anchor_concurrency: int = Field(default=10, ge=1)
    #: a submission's lease, renewed every third of it: a worker killed while submitting frees
    #: its slot after this long
    credential_anchor_lease_ttl_seconds: float = Field(default=30.0, gt=0)
    #: server-side limit on that queue's activity dispatch, for every worker together
    credential_anchor_rate_per_second: float = 10.0
    #: attempts to submit an anchor, exponential from the initial interval
    credential_anchor_max_attempts: int = 3
    credential_anchor_retry_initial_seconds: float = 5.0
    #: batch mode: one Merkle root per transaction for up to N credentials, or for what arrived
    #: within T seconds of the first; the default mode of POST .../anchor (a request may choose)
    credential_anchor_batch_default: bool = False
    credential_anchor_batch_size: int = 100
    credential_anchor_batch_wait_seconds: float = 10.0
    #: anchors one tenant may ask for in any 24 hours (single and batch items alike); past it
    #: the API answers 429 with Retry-After and starts nothing. 0: no quota
    credential_anchor_daily_quota_per_tenant: int = 1000
