"""The Cleanup workflow's input and results (passed between workflow and activities).

Which rows are operational and finished lives in ``store/cleanup.py``; the workflow only knows
the table names, so the ledger, deposits and anchors cannot be named by mistake: they are not in
:data:`PURGEABLE_TABLES`.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from domain.queues import Routed

#: the tables whose finished rows Cleanup exports and deletes, in this order
PURGEABLE_TABLES = ("verification_jobs", "notifications", "alerts")
#: added later (patch ``cleanup-webhook-deliveries``): a delivery's attempts, then the delivery
WEBHOOK_TABLES = ("webhook_attempts", "webhook_deliveries")


class CleanupInput(Routed):
    row_retention_days: int = Field(default=90, ge=1)
    batch_size: int = Field(default=500, ge=1)
    #: a run stops a table after this many batches; the next run goes on (bounded history)
    max_batches_per_table: int = Field(default=200, ge=1)


class PurgeBatchInput(BaseModel):
    table: str
    #: ISO 8601 UTC: rows finished before it go
    cutoff: str
    #: ``YYYY-MM-DD`` of the run: the export file's date
    run_date: str
    batch_size: int


class PurgeBatchResult(BaseModel):
    table: str
    #: rows written to the export file and deleted in this batch (the same rows)
    deleted: int = 0
    export_file: str | None = None


class CleanupResult(BaseModel):
    cutoff: str
    deleted: dict[str, int] = Field(default_factory=dict)
    export_files: list[str] = Field(default_factory=list)
