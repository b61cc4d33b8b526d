"""How long finished work is kept: in Temporal (closed executions) and in Settle's own tables."""

from __future__ import annotations

from pydantic import BaseModel, Field


class RetentionSettings(BaseModel):
    #: the namespace's retention of closed workflow executions (history and visibility); the dev
    #: server (``make run``) and the compose file set it explicitly, never the server's default
    temporal_retention_days: int = Field(default=30, ge=1)
    #: finished operational rows (verification jobs, notifications and webhook deliveries,
    #: cleared alerts) older than this are exported to ``CLEANUP_EXPORT_DIR`` and deleted by the
    #: ``Cleanup`` schedule; the ledger, deposits and anchors are never deleted
    row_retention_days: int = Field(default=90, ge=1)
    #: JSON lines, one file per table and day: ``<table>-<YYYY-MM-DD>.jsonl``
    cleanup_export_dir: str = ".data/exports"
    #: rows exported and deleted per transaction
    cleanup_batch_size: int = Field(default=500, ge=1, le=10_000)
    #: how often the ``Cleanup`` schedule runs
    cleanup_interval_seconds: int = Field(default=86_400, ge=60)
