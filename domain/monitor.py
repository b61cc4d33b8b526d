"""The Monitor's readings, thresholds and alert changes (passed between workflow and activities)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from domain.queues import Routed

#: the conditions the Monitor checks; an alert is open per condition at most once
CONDITIONS = (
    "backlog",
    "dead_letters",
    "oldest_open_job",
    "failure_rate",
    "treasury_gas",
    "solana_fee_payer",
)
TEST_CONDITION = "test"


class MonitorThresholds(BaseModel):
    #: activity tasks waiting in any one activity task queue (a paused or starved queue)
    backlog_max: int = 1000
    #: parked (needs_attention) jobs tolerated before alerting
    dead_letters_max: int = 0
    #: the oldest running job (a DepositWatch lives up to its expiry; scanners are excluded)
    oldest_open_job_max_seconds: int = 6 * 3600
    #: failed / closed executions over the window; only judged from ``failure_min_closed`` closed
    failure_rate_max: float = 0.2
    failure_window_minutes: int = 60
    failure_min_closed: int = 10
    #: the treasury's gas balance (wei) and the Solana fee payer's balance (lamports)
    treasury_min_wei: int = 10**16
    solana_min_lamports: int = 50_000_000


class Reading(BaseModel):
    condition: str
    value: float
    threshold: float
    breached: bool
    message: str
    severity: str = "warning"
    #: one reading per thing (a stuck step, ``domain.retries.STEP_ALERT``): its alert reference
    reference: str | None = None
    #: whose operation it is about (the alert is shown to that tenant's admins)
    tenant: str | None = None


class RaisedAlert(BaseModel):
    id: str
    condition: str
    severity: str
    message: str


class AlertChanges(BaseModel):
    raised: list[RaisedAlert] = Field(default_factory=list)
    cleared: list[str] = Field(default_factory=list)


class MonitorInput(Routed):
    #: the activity task queues whose backlog is read
    activity_queues: list[str] = Field(default_factory=list)
    thresholds: MonitorThresholds = Field(default_factory=MonitorThresholds)
    admin_emails: list[str] = Field(default_factory=list)
    alert_webhook_tenant: str = "settle-ops"
    #: ``POST /alerts/test``: raise (and send) a test alert besides the real readings
    test_alert_by: str | None = None
    #: ``STEP_ALERT_AFTER_ATTEMPTS``: a step failing this often is alerted on
    step_alert_after_attempts: int = 5


class MonitorResult(BaseModel):
    readings: list[Reading]
    changes: AlertChanges
