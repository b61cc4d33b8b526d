"""``Cleanup``: run daily by a Temporal Schedule (``<prefix>cleanup``).

Exports finished operational rows older than ``ROW_RETENTION_DAYS`` to JSON lines and deletes
them, table by table, one batch per activity (each batch is its own transaction: exported and
fsynced before its delete commits, ``store/cleanup.py``). The cutoff is taken once, from the
workflow's clock, so every batch of a run agrees on it.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from domain.cleanup import (
    PURGEABLE_TABLES,
    WEBHOOK_TABLES,
    CleanupInput,
    CleanupResult,
    PurgeBatchInput,
)
from domain.queues import ActivityQueue
from workflows.dead_letter import StepVisibility

with workflow.unsafe.imports_passed_through():
    from activities.cleanup import CleanupActivities

#: a batch that keeps failing waits for the next day's run rather than retrying forever
CLEANUP_RETRY = RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=5))
BATCH_TIMEOUT = timedelta(minutes=2)


@workflow.defn(name="Cleanup")
class Cleanup(StepVisibility):
    @workflow.run
    async def run(self, request: CleanupInput) -> CleanupResult:
        now = workflow.now()
        cutoff = (now - timedelta(days=request.row_retention_days)).isoformat()
        result = CleanupResult(cutoff=cutoff)
        tables: tuple[str, ...] = PURGEABLE_TABLES
        if workflow.patched("cleanup-webhook-deliveries"):
            tables = (*PURGEABLE_TABLES, *WEBHOOK_TABLES)
        for table in tables:
            deleted = 0
            for _ in range(request.max_batches_per_table):
                batch = await workflow.execute_activity_method(
                    CleanupActivities.purge_batch,
                    PurgeBatchInput(
                        table=table,
                        cutoff=cutoff,
                        run_date=now.date().isoformat(),
                        batch_size=request.batch_size,
                    ),
                    task_queue=request.queue(ActivityQueue.DB),
                    start_to_close_timeout=BATCH_TIMEOUT,
                    retry_policy=CLEANUP_RETRY,
                )
                deleted += batch.deleted
                if batch.export_file and batch.export_file not in result.export_files:
                    result.export_files.append(batch.export_file)
                if batch.deleted < request.batch_size:
                    break
            result.deleted[table] = deleted
        return result
