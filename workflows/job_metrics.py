"""Operation counters, counted by the worker at the moment an operation ends (issue 15 §7).

:func:`record_status` runs where every workflow sets its ``SettleStatus``
(``workflows/dead_letter.set_status``). It uses the workflow's metric meter, which records
nothing while a history is replayed, so a counter moves once per event, in the worker process that
ran it, and never goes down (a restart starts it at 0: ``rate()`` and ``increase()`` handle that).
The series are served on the worker's ``WORKER_METRICS_BIND`` endpoint, beside the SDK's own.

* ``queue_jobs_processed_total{queue, status}``: operations that ended, by ``SettleStatus``
  (succeeded, failed, cancelled, abandoned, expired);
* ``queue_jobs_failed_total{queue, status}``: the subset that failed or was abandoned;
* ``queue_jobs_parked_total{queue}``: times an operation parked for an operator;
* ``queue_job_processing_duration_seconds{queue}``: start of the run to its end, a cumulative
  histogram (buckets: ``domain.metrics.DURATION_BUCKETS``).

An execution that Temporal itself ends (terminated, timed out, a workflow task failing) never
reaches ``set_status``: the SDK's ``temporal_workflow_failed_total{workflow_type}`` counts those.
"""

from __future__ import annotations

from temporalio import workflow

from domain.metrics import DURATION_METRIC
from domain.search import SETTLE_KIND, OperationStatus

FINAL = frozenset(
    {
        OperationStatus.SUCCEEDED,
        OperationStatus.FAILED,
        OperationStatus.CANCELLED,
        OperationStatus.ABANDONED,
        OperationStatus.EXPIRED,
    }
)
FAILED = frozenset({OperationStatus.FAILED, OperationStatus.ABANDONED})


def _queue() -> str:
    kind = workflow.info().typed_search_attributes.get(SETTLE_KIND)
    return kind or workflow.info().workflow_type


def record_status(status: OperationStatus) -> None:
    """Count the operation's new status where it is an event worth counting."""
    meter = workflow.metric_meter()
    queue = _queue()
    if status is OperationStatus.NEEDS_ATTENTION:
        meter.create_counter(
            "queue_jobs_parked", "Operations parked for an operator (each time)"
        ).add(1, {"queue": queue})
        return
    if status not in FINAL:
        return
    labels = {"queue": queue, "status": status.value}
    meter.create_counter("queue_jobs_processed", "Operations that ended, by status").add(1, labels)
    if status in FAILED:
        meter.create_counter("queue_jobs_failed", "Operations that failed or were abandoned").add(
            1, labels
        )
    took = (workflow.now() - workflow.info().start_time).total_seconds()
    meter.create_histogram_float(
        DURATION_METRIC, "Start to end of the operation's run", "seconds"
    ).record(max(took, 0.0), {"queue": queue})
