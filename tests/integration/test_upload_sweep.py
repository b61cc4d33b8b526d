"""Orphaned verification uploads are removed; uploads of jobs still waiting are kept."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.upload_sweeper import sweep_uploads
from store.models import VerificationJob


def upload(folder: Path, job_id: str, age_seconds: float) -> Path:
    path = folder / f"{job_id}.upload"
    path.write_bytes(b"bytes")
    then = time.time() - age_seconds
    os.utime(path, (then, then))
    return path


async def test_old_uploads_without_a_waiting_job_are_removed(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    queued, done, never = (uuid.uuid4().hex for _ in range(3))
    async with sessions.begin() as session:
        for job_id, status in ((queued, "queued"), (done, "completed")):
            session.add(
                VerificationJob(
                    id=job_id,
                    tenant="t",
                    owner="u",
                    kind="verify",
                    status=status,
                    progress=0,
                    mode="async",
                    registry_address="0x" + "00" * 20,
                    manifest_uri="ipfs://x",
                    file_size=5,
                    workflow_id=f"verification-{job_id}",
                )
            )
    waiting = upload(tmp_path, queued, 3600)
    finished = upload(tmp_path, done, 3600)
    orphan = upload(tmp_path, never, 3600)
    fresh = upload(tmp_path, uuid.uuid4().hex, 10)  # its job may be starting right now
    removed = await sweep_uploads(tmp_path, sessions, older_than_seconds=900)
    assert sorted(removed) == sorted([finished.name, orphan.name])
    assert waiting.exists() and fresh.exists()
    assert not finished.exists() and not orphan.exists()
    assert await sweep_uploads(tmp_path / "missing", sessions, older_than_seconds=900) == []
