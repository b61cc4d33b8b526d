"""What the jobs operations answer (:mod:`operations.jobs`), as ``GET /api/v1/jobs`` and
``/api/v1/dead-letter`` return it: a job, its summary in a listing, an accepted action."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from api.jobs_lookup import OperatorDecision
from api.timestamps import UtcDateTime


class PendingActivity(BaseModel):
    activity_id: str
    activity_type: str
    state: str
    attempt: int
    maximum_attempts: int
    #: the last attempt's failure, with its causes
    last_failure: str | None = None
    #: when the next attempt is due (an activity backing off between attempts)
    next_attempt_at: UtcDateTime | None = None


class RetryingStep(BaseModel):
    """A step still failing after ``STEP_ALERT_AFTER_ATTEMPTS`` attempts, and retried."""

    #: the activity, e.g. ``deposits.set_outcome``
    step: str
    activity_id: str
    #: Temporal's attempt number of the attempt running or waiting to run
    attempt: int
    failed_attempts: int
    #: the last attempt's error, whole (as trimmed to fit Temporal's failure size limit)
    last_error: str | None


class JobView(BaseModel):
    id: str
    run_id: str | None
    workflow_type: str
    kind: str | None
    tenant: str | None
    user: str | None
    #: SettleStatus; Temporal's status for a run that closed without saying how it ended
    status: str | None
    temporal_status: str | None
    started_at: UtcDateTime | None
    closed_at: UtcDateTime | None
    #: activities in flight or backing off, with their attempt counts
    pending_activities: list[PendingActivity]
    #: a step failing again and again (``SettleStatus=retrying``), while it lasts
    retrying_step: RetryingStep | None = None
    #: a failed run's failure, or the error in a running workflow's ``status`` query, or the last
    #: error of a step still failing
    error: str | None
    #: set when an operator terminated or abandoned the job: what, why, who, when
    operator_decision: OperatorDecision | None = None
    #: the workflow's input and (once completed) result, decoded and redacted: ``admin`` and
    #: ``platform_admin`` only (None for anyone else)
    input: Any = None
    result: Any = None
    web_ui_url: str
    timeline_url: str


class JobSummary(BaseModel):
    id: str
    run_id: str | None
    workflow_type: str
    kind: str | None
    tenant: str | None
    user: str | None
    status: str | None
    temporal_status: str | None
    started_at: UtcDateTime | None
    closed_at: UtcDateTime | None
    job_url: str


class JobList(BaseModel):
    items: list[JobSummary]
    #: pass as ``cursor`` for the next page; None on the last page
    next_cursor: str | None


class JobAccepted(BaseModel):
    id: str
    action: str
    status_url: str


# The OpenAPI names these two by their module (``api__routers__jobs__JobView``) because
# ``api/routers/verification_jobs.py`` has models of the same names; they were defined in
# ``api.routers.jobs``, and the published component names must not change with the move. Pinned:
# the old module, and a rebuild (pydantic takes the name from the schema built with the class).
for _model in (JobView, JobList):
    _model.__module__ = "api.routers.jobs"
    _model.model_rebuild(force=True)
