"""Credential anchoring: the registry queue's concurrency and rate limit, and its retries."""

from __future__ import annotations

from pydantic import BaseModel


class CredentialSettings(BaseModel):
    #: activities of the `credentials` queue one worker runs at once
    credential_anchor_concurrency: int = 5
    #: server-side limit on that queue's activity dispatch, for every worker together
    credential_anchor_rate_per_second: float = 10.0
    #: attempts to submit an anchor, exponential from the initial interval
    credential_anchor_max_attempts: int = 3
    credential_anchor_retry_initial_seconds: float = 5.0
