"""The Temporal Schedules Settle runs, in one registry (:data:`SCHEDULES`): the Monitor, every
``MONITOR_INTERVAL_SECONDS``; Reconcile, daily at ``RECONCILE_CRON`` (UTC) over the previous UTC
day; Cleanup, every ``CLEANUP_INTERVAL_SECONDS``.

The worker serving the workflow queue creates each schedule at start, or updates it to the current
settings when it exists, so thresholds changed in the environment take effect on restart.
``GET /api/v1/schedules`` lists the registry's schedules; adding one is one :class:`SettleSchedule`
line in :data:`SCHEDULES`.

    temporal schedule describe --schedule-id settle-monitor
    temporal schedule trigger --schedule-id settle-monitor     # run it now
    temporal schedule trigger --schedule-id settle-reconcile   # reconcile yesterday now
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from domain.cleanup import CleanupInput
from domain.money import Currency, to_minor
from domain.monitor import MonitorInput, MonitorThresholds
from domain.queues import ActivityQueue, activity_queue_for_prefix, workflow_queue
from domain.reconcile import ReconcileInput
from runtime.logging import get_logger
from runtime.settings import Settings

log = get_logger("runtime.schedules")


def monitor_schedule_id(settings: Settings) -> str:
    return f"{settings.task_queue_prefix}monitor"


def monitor_input(settings: Settings, *, test_alert_by: str | None = None) -> MonitorInput:
    return MonitorInput(
        task_queue_prefix=settings.task_queue_prefix,
        activity_queues=[
            activity_queue_for_prefix(settings.task_queue_prefix, q) for q in ActivityQueue
        ],
        thresholds=MonitorThresholds(
            backlog_max=settings.monitor_backlog_max,
            dead_letters_max=settings.monitor_dead_letters_max,
            oldest_open_job_max_seconds=settings.monitor_oldest_open_job_max_seconds,
            failure_rate_max=settings.monitor_failure_rate_max,
            failure_window_minutes=settings.monitor_failure_window_minutes,
            failure_min_closed=settings.monitor_failure_min_closed,
            treasury_min_wei=settings.monitor_treasury_min_wei,
            solana_min_lamports=settings.monitor_solana_min_lamports,
        ),
        admin_emails=list(settings.admin_emails),
        alert_webhook_tenant=settings.alert_webhook_tenant,
        test_alert_by=test_alert_by,
        step_alert_after_attempts=settings.step_alert_after_attempts,
    )


def _settle_schedule(
    settings: Settings,
    workflow: str,
    workflow_input: object,
    name: str,
    spec: ScheduleSpec,
    timeout: timedelta,
) -> Schedule:
    """A schedule starting ``workflow`` on Settle's workflow queue, run id ``<prefix><name>-run``.
    A run still going when the next is due: skip the next, never pile them up."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            workflow,
            workflow_input,
            id=f"{settings.task_queue_prefix}{name}-run",
            task_queue=workflow_queue(settings.task_queue_prefix),
            execution_timeout=timeout,
        ),
        spec=spec,
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


def _every(seconds: float) -> ScheduleSpec:
    return ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=seconds))])


def monitor_schedule(settings: Settings) -> Schedule:
    return _settle_schedule(
        settings,
        "Monitor",
        monitor_input(settings),
        "monitor",
        _every(settings.monitor_interval_seconds),
        timedelta(minutes=5),
    )


def reconcile_schedule_id(settings: Settings) -> str:
    return f"{settings.task_queue_prefix}reconcile"


def reconcile_input(settings: Settings, **window: object) -> ReconcileInput:
    """The workflow's input; without ``since``/``until`` it reconciles the previous UTC day."""
    return ReconcileInput.model_validate(
        {
            "task_queue_prefix": settings.task_queue_prefix,
            "chain": settings.evm_chain,
            "min_intent_amount_minor": max(1, to_minor(settings.deposit_min_amount, Currency.USDC)),
            "status_wait_seconds": settings.reconcile_status_wait_seconds,
            "admin_emails": list(settings.admin_emails),
            "alert_webhook_tenant": settings.alert_webhook_tenant,
            **window,
        }
    )


def reconcile_schedule(settings: Settings) -> Schedule:
    return _settle_schedule(
        settings,
        "Reconcile",
        reconcile_input(settings),
        "reconcile",
        ScheduleSpec(cron_expressions=[settings.reconcile_cron]),
        timedelta(hours=2),
    )


def cleanup_input(settings: Settings) -> CleanupInput:
    return CleanupInput(
        task_queue_prefix=settings.task_queue_prefix,
        row_retention_days=settings.row_retention_days,
        batch_size=settings.cleanup_batch_size,
    )


def cleanup_schedule(settings: Settings) -> Schedule:
    return _settle_schedule(
        settings,
        "Cleanup",
        cleanup_input(settings),
        "cleanup",
        _every(settings.cleanup_interval_seconds),
        timedelta(hours=2),
    )


@dataclass(frozen=True)
class SettleSchedule:
    """One schedule Settle owns: its short name (``/api/v1/schedules/{name}``), the workflow it
    starts and how to build it from settings."""

    name: str
    workflow: str
    description: str
    build: Callable[[Settings], Schedule]
    #: whether the settings want it at all (an empty ``RECONCILE_CRON`` means no schedule)
    enabled: Callable[[Settings], bool] = lambda _settings: True

    def schedule_id(self, settings: Settings) -> str:
        return f"{settings.task_queue_prefix}{self.name}"


#: every schedule the worker keeps and the API lists, by short name
SCHEDULES: dict[str, SettleSchedule] = {
    s.name: s
    for s in (
        SettleSchedule(
            "monitor", "Monitor", "alerts on backlogs, dead letters, balances", monitor_schedule
        ),
        SettleSchedule(
            "reconcile",
            "Reconcile",
            "compares the ledger with each provider's records of the previous UTC day",
            reconcile_schedule,
            enabled=lambda settings: bool(settings.reconcile_cron.strip()),
        ),
        SettleSchedule(
            "cleanup", "Cleanup", "exports then deletes old finished rows", cleanup_schedule
        ),
    )
}


async def ensure_schedule(client: Client, settings: Settings, entry: SettleSchedule) -> None:
    """Create the schedule, or bring an existing one to the current settings (a pause set by an
    operator stays: only the schedule's action, spec and policy are replaced). One the settings
    do not want is not created."""
    if not entry.enabled(settings):
        return
    schedule = entry.build(settings)
    schedule_id = entry.schedule_id(settings)
    try:
        await client.create_schedule(schedule_id, schedule)
        log.info("schedule created", schedule_id=schedule_id)
    except ScheduleAlreadyRunningError:

        def replace(current: ScheduleUpdateInput) -> ScheduleUpdate:
            schedule.state = current.description.schedule.state
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(schedule_id).update(replace)
        log.info("schedule updated", schedule_id=schedule_id)


async def ensure_schedules(client: Client, settings: Settings) -> None:
    for entry in SCHEDULES.values():
        await ensure_schedule(client, settings, entry)


async def ensure_monitor_schedule(client: Client, settings: Settings) -> None:
    await ensure_schedule(client, settings, SCHEDULES["monitor"])


async def ensure_reconcile_schedule(client: Client, settings: Settings) -> None:
    await ensure_schedule(client, settings, SCHEDULES["reconcile"])
