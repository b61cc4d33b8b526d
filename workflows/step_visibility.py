"""The ``SettleStatus`` search attribute and the mixin that shows a step still failing as
``retrying``: every workflow takes the worker's step reports (``tests/unit/test_retry_policies``).
Apart from :mod:`workflows.dead_letter` so that workflows it imports (event delivery) can use them.
"""

from __future__ import annotations

from temporalio import workflow

from domain.retries import ALL_STEPS, STEP_RETRYING_SIGNAL, StepReport
from domain.search import SETTLE_STATUS, OperationStatus
from workflows.job_metrics import record_status


def set_status(status: OperationStatus) -> None:
    """The status search attribute, and the worker's counters (``workflows/job_metrics.py``)."""
    workflow.upsert_search_attributes([SETTLE_STATUS.value_set(status.value)])
    record_status(status)


class StepVisibility:
    """Mixin: ``SettleStatus=retrying`` while a step keeps failing (see :mod:`domain.retries`).

    A workflow cannot see the attempts of an activity in flight (they happen on the server), so
    the worker's activity interceptor reports them with :data:`STEP_RETRYING_SIGNAL`: when
    attempt N (``STEP_ALERT_AFTER_ATTEMPTS``) fails and will be retried or attempt N + 1 starts,
    and again when the step succeeds or gives up; the Monitor clears a report whose step is no
    longer pending (:data:`ALL_STEPS`). Only ``running`` becomes ``retrying`` and only
    ``retrying`` goes back: a parked or finished workflow keeps its status. Signals only:
    workflows without such reports (every recorded history) replay unchanged.
    """

    @workflow.signal(name=STEP_RETRYING_SIGNAL)
    def step_retrying(self, report: StepReport) -> None:
        steps: set[str] = self.__dict__.setdefault("_retrying_steps", set())
        if report.retrying:
            steps.add(report.activity_id)
        elif report.activity_id == ALL_STEPS:
            steps.clear()
        else:
            steps.discard(report.activity_id)
        current = workflow.info().typed_search_attributes.get(SETTLE_STATUS)
        if steps and current == OperationStatus.RUNNING.value:
            workflow.logger.warning(
                "step %s failing, attempt %d: %s",
                report.activity_type,
                report.attempt,
                report.error,
            )
            set_status(OperationStatus.RETRYING)
        elif not steps and current == OperationStatus.RETRYING.value:
            set_status(OperationStatus.RUNNING)
