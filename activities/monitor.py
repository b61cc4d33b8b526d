"""The Monitor's side effects: readings from Temporal visibility and the wallets, and the alerts
table (an alert opens when its condition is first found out of bounds and clears when a later run
finds it back within)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from domain.monitor import (
    TEST_CONDITION,
    AlertChanges,
    MonitorInput,
    RaisedAlert,
    Reading,
)
from domain.retries import ALL_STEPS, STEP_ALERT, STEP_RETRYING_SIGNAL, StepReport, step_reference
from domain.search import SETTLE_TENANT, OperationKind, OperationStatus
from providers.evm import EvmClient
from providers.solana.client import SolanaTicketClient
from runtime.failures import MESSAGE_MAX, trim_middle
from runtime.logging import get_logger
from runtime.redact import redact
from runtime.stuck_steps import stuck_steps
from store import alerts
from store.models import Alert, utcnow

log = get_logger("activities.monitor")

#: most ``retrying`` workflows described by one Monitor run
STUCK_SCAN_LIMIT = 200
#: most stuck-step alerts raised (and emailed) by one run: in an outage that stalls thousands of
#: steps the admins get the first ones at once and the rest run by run, not a flood
STEP_ALERTS_PER_RUN = 20


def _visibility_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class MonitorActivities:
    def __init__(
        self,
        client: Client,
        sessions: async_sessionmaker[AsyncSession],
        evm: EvmClient,
        treasury_address: str,
        solana: SolanaTicketClient,
    ) -> None:
        self._client, self._sessions = client, sessions
        self._evm, self._treasury, self._solana = evm, treasury_address, solana

    async def _count(self, query: str) -> int:
        return (await self._client.count_workflows(query)).count

    @activity.defn(name="monitor.measure")
    async def measure(self, request: MonitorInput) -> list[Reading]:
        """One reading per condition; a source that cannot be read is itself a breached reading."""
        limits = request.thresholds
        now = datetime.now(UTC)

        async def backlog() -> Reading:
            waiting: dict[str, int] = {}
            for queue in request.activity_queues:
                response = await self._client.workflow_service.describe_task_queue(
                    DescribeTaskQueueRequest(
                        namespace=self._client.namespace,
                        task_queue=TaskQueue(name=queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
                        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
                        report_stats=True,
                    )
                )
                if response.HasField("stats"):
                    waiting[queue] = response.stats.approximate_backlog_count
            worst = max(waiting, key=lambda q: waiting[q], default=None)
            deepest = waiting[worst] if worst else 0
            return Reading(
                condition="backlog",
                value=deepest,
                threshold=limits.backlog_max,
                breached=deepest > limits.backlog_max,
                message=f"{deepest} activity task(s) waiting in {worst or 'no queue'}",
            )

        async def dead_letters() -> Reading:
            parked = await self._count(
                f'SettleStatus = "{OperationStatus.NEEDS_ATTENTION.value}" '
                'AND ExecutionStatus = "Running"'
            )
            return Reading(
                condition="dead_letters",
                value=parked,
                threshold=limits.dead_letters_max,
                breached=parked > limits.dead_letters_max,
                message=f"{parked} job(s) parked for an operator (needs_attention)",
                severity="critical",
            )

        async def oldest_open_job() -> Reading:
            since = _visibility_time(now - timedelta(seconds=limits.oldest_open_job_max_seconds))
            old = await self._count(
                'ExecutionStatus = "Running" '
                f'AND SettleKind != "{OperationKind.CHAIN_SCANNER.value}" '
                f'AND StartTime < "{since}"'
            )
            return Reading(
                condition="oldest_open_job",
                value=old,
                threshold=0,
                breached=old > 0,
                message=f"{old} job(s) open longer than {limits.oldest_open_job_max_seconds} s",
            )

        async def failure_rate() -> Reading:
            since = _visibility_time(now - timedelta(minutes=limits.failure_window_minutes))
            closed = await self._count(f'ExecutionStatus != "Running" AND CloseTime > "{since}"')
            failed = await self._count(
                '(ExecutionStatus = "Failed" OR ExecutionStatus = "TimedOut" '
                f'OR ExecutionStatus = "Terminated") AND CloseTime > "{since}"'
            )
            rate = failed / closed if closed else 0.0
            judged = closed >= limits.failure_min_closed
            return Reading(
                condition="failure_rate",
                value=round(rate, 4),
                threshold=limits.failure_rate_max,
                breached=judged and rate > limits.failure_rate_max,
                message=(
                    f"{failed} of {closed} executions closed in the last "
                    f"{limits.failure_window_minutes} min failed, timed out or were terminated"
                ),
            )

        async def treasury_gas() -> Reading:
            wei = await self._evm.balance(self._treasury)
            return Reading(
                condition="treasury_gas",
                value=wei,
                threshold=limits.treasury_min_wei,
                breached=wei < limits.treasury_min_wei,
                message=f"treasury {self._treasury} holds {wei} wei of gas",
                severity="critical",
            )

        async def solana_fee_payer() -> Reading:
            lamports = await self._solana.balance_lamports()
            return Reading(
                condition="solana_fee_payer",
                value=lamports,
                threshold=limits.solana_min_lamports,
                breached=lamports < limits.solana_min_lamports,
                message=f"the Solana fee payer holds {lamports} lamports",
                severity="critical",
            )

        checks: dict[str, Callable[[], Awaitable[Reading]]] = {
            "backlog": backlog,
            "dead_letters": dead_letters,
            "oldest_open_job": oldest_open_job,
            "failure_rate": failure_rate,
            "treasury_gas": treasury_gas,
            "solana_fee_payer": solana_fee_payer,
        }
        readings = []
        for condition, check in checks.items():
            try:
                readings.append(await check())
            except Exception as exc:  # the monitor must report, not fail, when a source is down
                readings.append(
                    Reading(
                        condition=condition,
                        value=-1,
                        threshold=0,
                        breached=True,
                        message=f"could not be measured: {type(exc).__name__}: {exc}"[:500],
                        severity="critical",
                    )
                )
        readings += await self._stuck_steps(request.step_alert_after_attempts)
        if request.test_alert_by:
            readings.append(
                Reading(
                    condition=TEST_CONDITION,
                    value=1,
                    threshold=0,
                    breached=True,
                    message=f"test alert requested by {request.test_alert_by}",
                )
            )
        return readings

    async def _stuck_steps(self, alert_after: int) -> list[Reading]:
        """One reading per step still failing after ``alert_after`` attempts, in the workflows
        that say ``SettleStatus=retrying``, plus a summary reading (no reference) saying the scan
        was made: only then are step alerts cleared. A workflow still ``retrying`` with no such
        step (its report of recovery was lost) is told so."""
        summary = Reading(
            condition=STEP_ALERT, value=0, threshold=alert_after, breached=False, message=""
        )
        readings: list[Reading] = []
        complete = True
        try:
            executions = [
                e
                async for e in self._client.list_workflows(
                    f'SettleStatus = "{OperationStatus.RETRYING.value}" '
                    'AND ExecutionStatus = "Running"',
                    limit=STUCK_SCAN_LIMIT,
                )
            ]
        except Exception as exc:  # visibility is away: nothing found, nothing cleared
            log.warning("stuck steps not scanned", error=f"{type(exc).__name__}: {exc}")
            return readings
        for execution in executions:
            handle = self._client.get_workflow_handle(execution.id, run_id=execution.run_id)
            try:
                description = await handle.describe()
                steps = await stuck_steps(self._client, description, alert_after)
                if not steps:  # its report of recovery was lost: back to running
                    await handle.signal(
                        STEP_RETRYING_SIGNAL,
                        StepReport(
                            activity_type="", activity_id=ALL_STEPS, attempt=0, retrying=False
                        ),
                    )
            except Exception as exc:  # closed meanwhile, or unreachable: its alerts are kept
                log.info("retrying workflow not read", workflow_id=execution.id, error=str(exc))
                complete = False
                continue
            for step in steps:
                readings.append(
                    Reading(
                        condition=STEP_ALERT,
                        value=step.attempt - 1,
                        threshold=alert_after,
                        breached=True,
                        message=trim_middle(
                            f"{execution.id}: step {step.activity_type} still failing after "
                            f"{step.attempt - 1} attempts: {step.last_error}",
                            MESSAGE_MAX,
                        ),
                        reference=step_reference(execution.id, step.activity_id),
                        tenant=execution.typed_search_attributes.get(SETTLE_TENANT),
                    )
                )
        if not complete:  # report what was found; clear nothing on a partial scan
            return readings
        summary.value = len(readings)
        summary.message = f"{len(readings)} step(s) failing after {alert_after} attempts"
        return [summary, *readings]

    @activity.defn(name="monitor.reconcile")
    async def reconcile(self, readings: list[Reading]) -> AlertChanges:
        """Open an alert for each newly breached condition, clear those back within bounds.

        A test alert is raised anew for each request and cleared by the next regular run.
        """
        changes = AlertChanges()
        steps = [r for r in readings if r.condition == STEP_ALERT]
        readings = [r for r in readings if r.condition != STEP_ALERT]
        by_condition = {r.condition: r for r in readings}
        async with self._sessions.begin() as session:
            await _reconcile_steps(session, steps, changes)
            rows = await session.execute(select(Alert).where(Alert.status == "open"))
            open_alerts = {a.condition: a for a in rows.scalars()}
            for condition, alert in open_alerts.items():
                if alerts.is_event(condition):
                    continue  # one operation's alert: nothing here measures it again
                reading = by_condition.get(condition)
                if reading is None or not reading.breached:
                    alert.status, alert.cleared_at = "cleared", utcnow()
                    changes.cleared.append(alert.id)
            for reading in readings:
                if not reading.breached:
                    continue
                if reading.condition in open_alerts and reading.condition != TEST_CONDITION:
                    continue
                alert = Alert(
                    condition=reading.condition,
                    severity=reading.severity,
                    message=redact(reading.message),
                    value=str(reading.value),
                    threshold=str(reading.threshold),
                    status="open",
                )
                session.add(alert)
                await session.flush()
                changes.raised.append(
                    RaisedAlert(
                        id=alert.id,
                        condition=alert.condition,
                        severity=alert.severity,
                        message=alert.message,
                    )
                )
        for raised in changes.raised:
            log.warning("alert raised", condition=raised.condition, message=raised.message)
        for cleared in changes.cleared:
            log.info("alert cleared", alert_id=cleared)
        return changes


async def _reconcile_steps(
    session: AsyncSession, steps: list[Reading], changes: AlertChanges
) -> None:
    """One open alert per stuck step (by reference); cleared once a complete scan (one with its
    summary reading) no longer finds the step."""
    stuck = {r.reference: r for r in steps if r.reference and r.breached}
    scanned = any(r.reference is None for r in steps)
    rows = await session.execute(
        select(Alert).where(Alert.condition == STEP_ALERT, Alert.status == "open")
    )
    open_refs = set()
    for alert in rows.scalars():
        open_refs.add(alert.value)
        if scanned and alert.value not in stuck:
            alert.status, alert.cleared_at = "cleared", utcnow()
            changes.cleared.append(alert.id)
    new = [(ref, r) for ref, r in stuck.items() if ref not in open_refs]
    for reference, reading in new[:STEP_ALERTS_PER_RUN]:
        alert = Alert(
            condition=STEP_ALERT,
            severity=reading.severity,
            message=redact(reading.message),
            value=reference,
            threshold=str(int(reading.threshold)),
            status="open",
            tenant=reading.tenant,
        )
        session.add(alert)
        await session.flush()
        changes.raised.append(
            RaisedAlert(
                id=alert.id,
                condition=alert.condition,
                severity=alert.severity,
                message=alert.message,
            )
        )
