"""Path parameters the jobs and dead-letter routers share (no router imports another)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from api.jobs_lookup import JOB_ID_PATTERN

JobId = Annotated[
    str,
    Path(
        pattern=JOB_ID_PATTERN,
        description="the workflow id, e.g. mpesa-deposit-<deposit id>",
        examples=["mpesa-deposit-0b6f5d2e-5a0c-4f43-9a53-2f4b8f0d6c11"],
    ),
]
