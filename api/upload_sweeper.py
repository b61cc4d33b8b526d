"""Uploads no job will ever hash are removed.

A verification upload is deleted by its job once hashed, or by the API when a request is refused.
One window remains: the API process stops between saving the upload and starting its job. The
sweeper, in every API process, removes uploads older than ``VERIFICATION_ORPHAN_UPLOAD_SECONDS``
whose job has no row or has finished; an upload whose job is still queued or active is kept,
however old (its workers may be paused).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.verification import FINAL_STATUSES
from runtime.logging import get_logger
from store.models import VerificationJob

log = get_logger("api.upload_sweeper")
SUFFIX = ".upload"


def _old_uploads(folder: Path, older_than_seconds: float, now: float) -> list[Path]:
    if not folder.is_dir():
        return []
    old = []
    for path in folder.glob(f"*{SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):  # hashed and deleted meanwhile
            if now - path.stat().st_mtime > older_than_seconds:
                old.append(path)
    return old


async def sweep_uploads(
    folder: Path,
    sessions: async_sessionmaker[AsyncSession],
    older_than_seconds: float,
    now: float | None = None,
) -> list[str]:
    """Remove the orphaned uploads; returns their file names."""
    now = time.time() if now is None else now
    old = await asyncio.to_thread(_old_uploads, folder, older_than_seconds, now)
    if not old:
        return []
    ids = [path.name.removesuffix(SUFFIX) for path in old]
    async with sessions() as session:
        rows = await session.execute(
            select(VerificationJob.id, VerificationJob.status).where(VerificationJob.id.in_(ids))
        )
        waiting = {job_id for job_id, status in rows.all() if status not in FINAL_STATUSES}
    removed = []
    for path in old:
        if path.name.removesuffix(SUFFIX) not in waiting:
            await asyncio.to_thread(path.unlink, missing_ok=True)
            removed.append(path.name)
    if removed:
        log.warning("orphaned verification uploads removed", count=len(removed), files=removed)
    return removed


async def sweep_forever(
    folder: Path,
    sessions: async_sessionmaker[AsyncSession],
    older_than_seconds: float,
    every_seconds: float = 60.0,
) -> None:
    while True:
        try:
            await sweep_uploads(folder, sessions, older_than_seconds)
        except Exception as exc:  # a DB blip: try again next round
            log.warning("upload sweep failed", error=str(exc))
        await asyncio.sleep(every_seconds)
