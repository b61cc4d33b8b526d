"""The Cleanup workflow's one step (queue ``db``): export a batch of finished rows, then delete it.

The export folder is the worker's (``CLEANUP_EXPORT_DIR``): run the ``db`` queue's workers where
that folder is kept (a volume in the compose file).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.verification import upload_path
from domain.cleanup import PurgeBatchInput, PurgeBatchResult
from runtime.logging import get_logger
from store import cleanup

#: the API saves a job's upload as ``<job id>.upload`` (api/routers/verification_jobs.py)
UPLOAD_SUFFIX = ".upload"

log = get_logger("activities.cleanup")


class CleanupActivities:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], export_dir: Path, upload_dir: Path
    ) -> None:
        self._sessions = sessions
        self._export_dir = export_dir
        self._upload_dir = upload_dir

    @activity.defn(name="cleanup.purge_batch")
    async def purge_batch(self, request: PurgeBatchInput) -> PurgeBatchResult:
        """Export and delete up to ``batch_size`` rows of one table, in one transaction."""
        if request.table not in cleanup.TABLES:
            raise ValueError(f"{request.table} is not a table Cleanup may delete from")
        path = cleanup.export_path(self._export_dir, request.table, request.run_date)

        async def write(lines: list[str]) -> None:
            await asyncio.to_thread(cleanup.append_fsynced, path, lines)

        async with self._sessions.begin() as session:
            rows = await cleanup.purge_batch(
                session,
                request.table,
                datetime.fromisoformat(request.cutoff),
                request.batch_size,
                write,
            )
        if request.table == "verification_jobs":
            # a finished job's upload is normally gone already; what is left goes with the row
            for row in rows:
                with contextlib.suppress(ValueError):
                    target = upload_path(self._upload_dir, f"{row['id']}{UPLOAD_SUFFIX}")
                    await asyncio.to_thread(target.unlink, missing_ok=True)
        if rows:
            log.info(
                "rows exported and deleted", table=request.table, rows=len(rows), file=str(path)
            )
        return PurgeBatchResult(
            table=request.table, deleted=len(rows), export_file=str(path) if rows else None
        )
