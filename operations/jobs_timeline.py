"""A job's timeline: what its workflow history says happened, and what its activities wrote.

From the history: the start, each activity's scheduling and its end (completed, failed, timed
out, cancelled) with its attempt and how long it took, timers, signals (an operator's ``retry``
and ``abandon`` among them, with who sent them), cancel requests, search-attribute changes of
``SettleStatus`` and the run's end (a termination with its reason and who). From ``job_logs``:
the lines its activities wrote (``activities/job_log.py``). Newest last.

Workflow-task events and markers are left out (Temporal's bookkeeping, not the job's), except a
local activity's marker: the bookkeeping steps run as local activities first
(``workflows/bookkeeping.py``) and show as ``activity_completed`` / ``activity_failed`` with
``local`` set, their attempt and their duration from the marker's own data.
Signal inputs are not shown (a signal may carry a callback's personal data); failures are
decoded through the payload codec and redacted.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import EventType
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.service import RPCError

from api.jobs_lookup import JobRef, failure_messages, raise_if_unreachable, who
from api.timestamps import UtcDateTime
from runtime.redact import redact
from store.models import JobLog

#: most log lines and history entries one timeline shows (the newest are kept)
MAX_ENTRIES = 2000
#: the marker the SDK's core records for each local activity, and its details' JSON key
LOCAL_ACTIVITY_MARKER = "core_local_activity"
#: signals an operator sends (``workflows/dead_letter.py``)
OPERATOR_SIGNALS = frozenset({"retry", "abandon"})

E = EventType


class TimelineEntry(BaseModel):
    at: UtcDateTime
    source: Literal["history", "log"]
    #: started, activity_scheduled, activity_completed, activity_failed, activity_timed_out,
    #: activity_cancelled, timer_started, timer_fired, timer_cancelled, signal, operator_action,
    #: cancel_requested, status, completed, failed, cancelled, terminated, timed_out,
    #: continued_as_new, log
    type: str
    #: the activity type, signal name or timer id
    step: str | None = None
    attempt: int | None = None
    duration_ms: int | None = None
    message: str | None = None
    #: a failure's error type (``IdempotencyConflict``, ``EvmReverted``...), from its causes
    error_type: str | None = None
    #: who sent a signal, a cancel or a termination (token subject, or Temporal identity)
    by: str | None = None
    #: a log line's level
    level: str | None = None
    #: the step ran as a local activity (in the workflow's worker, recorded as a marker)
    local: bool | None = None


class Timeline(BaseModel):
    id: str
    run_id: str | None
    entries: list[TimelineEntry]


def _at(event: HistoryEvent) -> datetime:
    return event.event_time.ToDatetime(tzinfo=UTC)


def _ms(start: datetime | None, end: datetime) -> int | None:
    return int((end - start).total_seconds() * 1000) if start else None


class _Reader:
    """Turns history events into entries, remembering what each activity's end refers to."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.entries: list[TimelineEntry] = []
        #: scheduled event id -> (activity type, scheduled at)
        self.scheduled: dict[int, tuple[str, datetime]] = {}
        #: started event id -> (attempt, started at)
        self.started: dict[int, tuple[int, datetime]] = {}
        self.timers: dict[int, datetime] = {}

    def add(self, event: HistoryEvent, type_: str, **fields: Any) -> None:
        self.entries.append(TimelineEntry(at=_at(event), source="history", type=type_, **fields))

    async def failure(self, failure: Failure) -> dict[str, Any]:
        """``message`` (decoded, with its causes, redacted) and ``error_type`` of a failure."""
        error_type: str | None = None
        cause: Failure | None = failure
        while cause is not None and error_type is None:
            if cause.HasField("application_failure_info"):
                error_type = cause.application_failure_info.type or None
            cause = cause.cause if cause.HasField("cause") else None
        message = redact(": ".join(await failure_messages(self.client, failure)))
        return {"message": message or None, "error_type": error_type}

    async def read(self, event: HistoryEvent) -> None:
        t = event.event_type
        if t == E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            a = event.workflow_execution_started_event_attributes
            self.add(event, "started", step=a.workflow_type.name, attempt=a.attempt)
        elif t == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            s = event.activity_task_scheduled_event_attributes
            self.scheduled[event.event_id] = (s.activity_type.name, _at(event))
            self.add(event, "activity_scheduled", step=s.activity_type.name)
        elif t == E.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            st = event.activity_task_started_event_attributes
            self.started[event.event_id] = (st.attempt, _at(event))
        elif t == E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            c = event.activity_task_completed_event_attributes
            await self._activity_end(
                event, "activity_completed", c.scheduled_event_id, c.started_event_id
            )
        elif t == E.EVENT_TYPE_ACTIVITY_TASK_FAILED:
            f = event.activity_task_failed_event_attributes
            await self._activity_end(
                event,
                "activity_failed",
                f.scheduled_event_id,
                f.started_event_id,
                **await self.failure(f.failure),
            )
        elif t == E.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
            o = event.activity_task_timed_out_event_attributes
            await self._activity_end(
                event,
                "activity_timed_out",
                o.scheduled_event_id,
                o.started_event_id,
                **await self.failure(o.failure),
            )
        elif t == E.EVENT_TYPE_ACTIVITY_TASK_CANCELED:
            x = event.activity_task_canceled_event_attributes
            await self._activity_end(
                event, "activity_cancelled", x.scheduled_event_id, x.started_event_id
            )
        elif t == E.EVENT_TYPE_MARKER_RECORDED:
            await self._local_activity(event)
        elif t == E.EVENT_TYPE_TIMER_STARTED:
            ts = event.timer_started_event_attributes
            self.timers[event.event_id] = _at(event)
            seconds = ts.start_to_fire_timeout.ToTimedelta().total_seconds()
            self.add(event, "timer_started", step=ts.timer_id, message=f"{seconds:g} s")
        elif t == E.EVENT_TYPE_TIMER_FIRED:
            tf = event.timer_fired_event_attributes
            began = self.timers.get(tf.started_event_id)
            self.add(event, "timer_fired", step=tf.timer_id, duration_ms=_ms(began, _at(event)))
        elif t == E.EVENT_TYPE_TIMER_CANCELED:
            self.add(event, "timer_cancelled", step=event.timer_canceled_event_attributes.timer_id)
        elif t == E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            sg = event.workflow_execution_signaled_event_attributes
            kind = "operator_action" if sg.signal_name in OPERATOR_SIGNALS else "signal"
            self.add(event, kind, step=sg.signal_name, by=who(sg.identity))
        elif t == E.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED:
            cr = event.workflow_execution_cancel_requested_event_attributes
            self.add(event, "cancel_requested", message=cr.cause or None, by=who(cr.identity))
        elif t == E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
            status = fields.indexed_fields.get("SettleStatus")
            if status is not None:
                self.add(event, "status", message=json.loads(status.data))
        elif t == E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
            self.add(event, "completed")
        elif t == E.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
            failed = event.workflow_execution_failed_event_attributes
            self.add(event, "failed", **await self.failure(failed.failure))
        elif t == E.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
            self.add(event, "cancelled")
        elif t == E.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
            tm = event.workflow_execution_terminated_event_attributes
            self.add(event, "terminated", message=tm.reason or None, by=who(tm.identity))
        elif t == E.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
            self.add(event, "timed_out")
        elif t == E.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            self.add(event, "continued_as_new")

    async def _local_activity(self, event: HistoryEvent) -> None:
        """A local activity's end, from its marker (other markers are left out)."""
        marker = event.marker_recorded_event_attributes
        if marker.marker_name != LOCAL_ACTIVITY_MARKER or "data" not in marker.details:
            return
        payloads = marker.details["data"].payloads
        if not payloads or payloads[0].metadata.get("encoding") != b"json/plain":
            return
        try:
            data = json.loads(payloads[0].data)
        except ValueError:
            return
        scheduled = data.get("original_schedule_time") or {}
        began = (
            datetime.fromtimestamp(
                int(scheduled.get("seconds", 0)) + int(scheduled.get("nanos", 0)) / 1e9, tz=UTC
            )
            if scheduled
            else None
        )
        failed = marker.HasField("failure")
        self.add(
            event,
            "activity_failed" if failed else "activity_completed",
            step=data.get("activity_type"),
            attempt=data.get("attempt"),
            duration_ms=_ms(began, _at(event)),
            local=True,
            **(await self.failure(marker.failure) if failed else {}),
        )

    async def _activity_end(
        self,
        event: HistoryEvent,
        type_: str,
        scheduled_id: int,
        started_id: int,
        message: str | None = None,
        error_type: str | None = None,
    ) -> None:
        step, scheduled_at = self.scheduled.get(scheduled_id, (None, None))
        attempt, _ = self.started.get(started_id, (None, None))
        self.add(
            event,
            type_,
            step=step,
            attempt=attempt,
            duration_ms=_ms(scheduled_at, _at(event)),
            message=message,
            error_type=error_type,
        )


async def history_entries(client: Client, job: JobRef) -> list[TimelineEntry]:
    reader = _Reader(client)
    handle = client.get_workflow_handle(job.id, run_id=job.run_id)
    try:
        async for event in handle.fetch_history_events():
            await reader.read(event)
    except (RPCError, RuntimeError) as exc:
        raise_if_unreachable(exc)
        raise
    return reader.entries


async def log_entries(
    reads: async_sessionmaker[AsyncSession], workflow_id: str
) -> list[TimelineEntry]:
    async with reads() as session:
        rows = (
            await session.execute(
                select(JobLog)
                .where(JobLog.workflow_id == workflow_id)
                .order_by(JobLog.id.desc())
                .limit(MAX_ENTRIES)
            )
        ).scalars()
        return [
            TimelineEntry(
                at=row.at,
                source="log",
                type="log",
                step=row.activity,
                attempt=row.attempt,
                message=row.message,
                level=row.level,
            )
            for row in reversed(list(rows))
        ]


async def timeline(
    client: Client, reads: async_sessionmaker[AsyncSession], job: JobRef
) -> Timeline:
    """History and log lines merged by time, newest last (a log line written during an activity
    comes before that activity's completion)."""
    entries = await history_entries(client, job) + await log_entries(reads, job.id)
    entries.sort(key=lambda e: e.at)  # stable: history before a log line of the same instant
    return Timeline(id=job.id, run_id=job.run_id, entries=entries[-MAX_ENTRIES:])
