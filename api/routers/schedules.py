"""``/api/v1/schedules``: Settle's Temporal Schedules (the registry in ``runtime/schedules.py``),
for ``platform_admin`` only: they run across every tenant.

The same as ``temporal schedule describe|toggle|trigger --schedule-id <prefix><name>``; the API
adds the registry's names, so a caller never needs the task-queue prefix.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field
from temporalio.client import Client, ScheduleActionExecutionStartWorkflow, ScheduleHandle
from temporalio.service import RPCError, RPCStatusCode

from api.deps import PlatformAdmin, TemporalDep
from api.jobs_lookup import raise_if_unreachable
from domain.errors import NotFound
from runtime.logging import get_logger
from runtime.schedules import SCHEDULES, SettleSchedule
from runtime.settings import Settings

router = APIRouter(prefix="/api/v1/schedules", tags=["schedules"])
log = get_logger("api.schedules")

_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"description": "no valid token"},
    403: {"description": "not platform_admin"},
    404: {"description": "no such schedule, or the worker has not created it yet"},
    503: {"description": "Temporal unavailable"},
}
ScheduleName = Annotated[str, Path(max_length=64, description="the registry's name: monitor, ...")]


class RecentRun(BaseModel):
    scheduled_at: datetime
    started_at: datetime
    workflow_id: str | None = None


class ScheduleView(BaseModel):
    name: str
    schedule_id: str
    workflow: str
    description: str
    #: false until a worker serving the workflow queue has created it
    exists: bool
    paused: bool | None = None
    note: str | None = None
    actions_taken: int | None = None
    next_runs: list[datetime] = Field(default_factory=list)
    recent_runs: list[RecentRun] = Field(default_factory=list)


class ScheduleAction(BaseModel):
    note: str | None = Field(default=None, max_length=500)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _entry(name: str) -> SettleSchedule:
    entry = SCHEDULES.get(name)
    if entry is None:
        raise NotFound(f"no schedule {name!r}; known: {sorted(SCHEDULES)}", field="schedule_id")
    return entry


def _missing(exc: RPCError) -> bool:
    return exc.status == RPCStatusCode.NOT_FOUND


async def _view(client: Client, settings: Settings, entry: SettleSchedule) -> ScheduleView:
    schedule_id = entry.schedule_id(settings)
    view = ScheduleView(
        name=entry.name,
        schedule_id=schedule_id,
        workflow=entry.workflow,
        description=entry.description,
        exists=False,
    )
    try:
        described = await client.get_schedule_handle(schedule_id).describe()
    except RPCError as exc:
        if _missing(exc):
            return view
        raise_if_unreachable(exc)
        raise
    state, info = described.schedule.state, described.info
    view.exists, view.paused, view.note = True, state.paused, state.note or None
    view.actions_taken = info.num_actions
    view.next_runs = list(info.next_action_times[:5])
    view.recent_runs = [
        RecentRun(
            scheduled_at=r.scheduled_at,
            started_at=r.started_at,
            workflow_id=r.action.workflow_id
            if isinstance(r.action, ScheduleActionExecutionStartWorkflow)
            else None,
        )
        for r in info.recent_actions[-5:]
    ]
    return view


async def _act(
    request: Request, client: Client, name: str, principal: PlatformAdmin, action: str, note: str
) -> ScheduleView:
    settings = _settings(request)
    entry = _entry(name)
    handle: ScheduleHandle = client.get_schedule_handle(entry.schedule_id(settings))
    try:
        if action == "pause":
            await handle.pause(note=note)
        elif action == "resume":
            await handle.unpause(note=note)
        else:
            await handle.trigger()
    except RPCError as exc:
        if _missing(exc):
            raise NotFound(
                f"schedule {name} has not been created yet (the worker creates it at start)",
                field="schedule_id",
            ) from exc
        raise_if_unreachable(exc)
        raise
    log.info("schedule " + action, schedule=name, by=principal.subject, tenant=principal.tenant)
    return await _view(client, settings, entry)


@router.get("", responses=_AUTH)
async def list_schedules(
    request: Request, _: PlatformAdmin, client: TemporalDep
) -> dict[str, list[ScheduleView]]:
    """Every schedule in the registry: paused or not, next and recent runs."""
    settings = _settings(request)
    return {"schedules": [await _view(client, settings, e) for e in SCHEDULES.values()]}


@router.post("/{schedule_id}/pause", responses=_AUTH)
async def pause_schedule(
    request: Request,
    schedule_id: ScheduleName,
    principal: PlatformAdmin,
    client: TemporalDep,
    body: ScheduleAction | None = None,
) -> ScheduleView:
    """No new runs until resumed (a run in progress finishes)."""
    note = (body.note if body else None) or f"paused by {principal.subject} through the API"
    return await _act(request, client, schedule_id, principal, "pause", note)


@router.post("/{schedule_id}/resume", responses=_AUTH)
async def resume_schedule(
    request: Request,
    schedule_id: ScheduleName,
    principal: PlatformAdmin,
    client: TemporalDep,
    body: ScheduleAction | None = None,
) -> ScheduleView:
    note = (body.note if body else None) or f"resumed by {principal.subject} through the API"
    return await _act(request, client, schedule_id, principal, "resume", note)


@router.post("/{schedule_id}/trigger", responses=_AUTH)
async def trigger_schedule(
    request: Request, schedule_id: ScheduleName, principal: PlatformAdmin, client: TemporalDep
) -> ScheduleView:
    """One run now, paused or not (the overlap policy applies: skipped while one is running)."""
    return await _act(request, client, schedule_id, principal, "trigger", "")
