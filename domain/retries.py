"""Steps that keep failing are reported, never retried forever in silence (issue 14 §3).

Some steps retry without bound on purpose (DB bookkeeping that must happen, chain reads that
outlast a node restart, waiting for confirmations); the others are bounded and park or fail. Either
way, from attempt ``STEP_ALERT_AFTER_ATTEMPTS`` on a failing step becomes visible:

- the worker's activity interceptor (:mod:`runtime.interceptors`) sends the workflow the
  :data:`STEP_RETRYING_SIGNAL` with a :class:`StepReport` when attempt N fails and will be
  retried, or attempt N + 1 starts (attempt N may have timed out), and again
  (``retrying=False``) when a reported step succeeds or gives up;
- the workflow (``workflows.dead_letter.StepVisibility``) sets ``SettleStatus=retrying`` and back;
- the jobs API and the dead-letter listing read the step, its attempt and its last error from
  Temporal's ``describe`` (pending activities with their last failure);
- the Monitor lists ``SettleStatus="retrying"`` workflows, raises one :data:`STEP_ALERT` per stuck
  step (deduplicated by workflow and activity) and clears it once the step is no longer stuck.
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel

STEP_RETRYING_SIGNAL = "step_retrying"
#: the alert condition of a stuck step (an event alert: one per workflow and step)
STEP_ALERT = "step_retrying"
#: the alert condition of a step that failed for good and parked its workflow
STEP_PARKED_ALERT = "step_parked"
#: a report's ``activity_id`` meaning every step (the Monitor clears a stale ``retrying`` with it)
ALL_STEPS = "*"
#: error types of a write the database refuses for good (``runtime.db_errors``): never retried,
#: a workflow parks on them
DB_REFUSALS = frozenset(
    {
        "UniqueViolation",
        "CheckViolation",
        "NotNullViolation",
        "ExclusionViolation",
        "RestrictViolation",
        "IntegrityError",
    }
)
#: the longest error a report carries (the full last failure is in ``describe``)
REPORT_ERROR_MAX = 500


class StepReport(BaseModel):
    """A step (activity) of this workflow is failing repeatedly, or no longer is."""

    activity_type: str
    activity_id: str
    attempt: int
    retrying: bool
    error: str | None = None


def step_reference(workflow_id: str, activity_id: str) -> str:
    """The alert reference of one step of one workflow (alerts keep 64 characters)."""
    reference = f"{workflow_id}#{activity_id}"
    if len(reference) <= 64:
        return reference
    digest = hashlib.sha256(reference.encode()).hexdigest()[:16]
    return f"{workflow_id[: 64 - 18]}#~{digest}"
