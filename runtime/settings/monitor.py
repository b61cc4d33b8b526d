"""The Monitor: how often it runs and the thresholds it alerts on."""

from __future__ import annotations

from pydantic import BaseModel, Field


class MonitorSettings(BaseModel):
    #: the Temporal Schedule that runs the Monitor workflow (created or updated by the worker)
    monitor_interval_seconds: int = 60
    #: activity tasks waiting in one activity task queue before alerting
    monitor_backlog_max: int = 1000
    monitor_dead_letters_max: int = 0
    monitor_oldest_open_job_max_seconds: int = 6 * 3600
    monitor_failure_rate_max: float = 0.2
    monitor_failure_window_minutes: int = 60
    monitor_failure_min_closed: int = 10
    #: the treasury's gas (ETH, in wei) and the Solana fee payer's balance (lamports)
    monitor_treasury_min_wei: int = 10**16
    monitor_solana_min_lamports: int = 50_000_000
    #: a step (activity) still failing after this many attempts is shown: ``SettleStatus=retrying``,
    #: its attempt and last error in the jobs API and the dead-letter listing, and an alert per step
    #: (``step_retrying``). No retry policy retries past it in silence (issue 14 §3)
    step_alert_after_attempts: int = Field(default=5, ge=1)
    #: alert webhooks go to the endpoints registered for this tenant (POST /api/v1/webhook-endpoints
    #: with a token of that tenant); emails go to ADMIN_EMAILS
    alert_webhook_tenant: str = "settle-ops"
    #: the Reconcile schedule (cron, UTC): each run reconciles the previous UTC day; empty: no
    #: schedule (on demand only, POST /api/v1/reconciliations)
    reconcile_cron: str = "30 0 * * *"
    #: how long a reconciliation waits for Daraja's Transaction Status results (ResultURL)
    reconcile_status_wait_seconds: float = 120.0
