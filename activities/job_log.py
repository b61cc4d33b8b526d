"""``job_log``: an activity appends a line to its job's log (``job_logs``, keyed by workflow id).

The workflow's history says which steps ran and how they ended; these lines say what a step
found or did (the CheckoutRequestID Daraja gave, the ledger entry a credit made, the transaction
an anchor sent). ``GET /api/v1/jobs/{id}/timeline`` shows both, newest last.

A line is about ids and outcomes, never personal data (no phone, email or name): operators of
the job's tenant read it, and it is stored in clear. Writing it never fails the activity: a line
that cannot be stored goes to the process log instead.

:func:`add_line` writes the line in the activity's own transaction instead: committed with the
work it describes, and no transaction of its own (a begin, an insert and a commit per step was
the price of :func:`job_log` on the hot paths). It does no I/O itself; the insert goes with the
session's commit.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session
from temporalio import activity

from runtime.logging import get_logger
from runtime.redact import redact
from store.models import JobLog

log = get_logger("activities.job_log")

Level = Literal["info", "warning", "error"]
#: longest line kept (a line is a sentence, not a payload)
MAX_MESSAGE = 2000


async def job_log(
    sessions: async_sessionmaker[AsyncSession],
    message: str,
    *,
    level: Level = "info",
    workflow_id: str | None = None,
) -> None:
    """Append ``message`` to the log of the job this activity runs for (its workflow id, run,
    activity type and attempt come from the activity's context). ``workflow_id`` overrides it
    (a line about another job); outside an activity without one, the line is only logged."""
    row = _line(message, level, workflow_id)
    if row is None:
        return
    try:
        async with sessions.begin() as session:
            session.add(row)
    except Exception as exc:  # the step's own work matters more than its log line
        log.warning(
            "job log line not stored",
            workflow_id=row.workflow_id,
            message=row.message,
            error=str(exc),
        )


def add_line(
    session: AsyncSession | Session,
    message: str,
    *,
    level: Level = "info",
    workflow_id: str | None = None,
) -> None:
    """:func:`job_log` inside the caller's transaction (``session``): stored when it commits."""
    row = _line(message, level, workflow_id)
    if row is not None:
        session.add(row)


def _line(message: str, level: Level, workflow_id: str | None) -> JobLog | None:
    info = activity.info() if activity.in_activity() else None
    target = workflow_id or (info.workflow_id if info else None)
    text = redact(message)[:MAX_MESSAGE]
    if not target:
        log.info("job log line without a job", message=text)
        return None
    return JobLog(
        workflow_id=target,
        run_id=info.workflow_run_id if info and not workflow_id else None,
        activity=info.activity_type if info else None,
        attempt=info.attempt if info else None,
        level=level,
        message=text,
    )
