"""deploy/grafana-dashboard.json and deploy/prometheus-alerts.yml parse, every series they use is
one Settle's API or worker exports, every operation kind has a backlog rule, and the README maps
every metric of the old service to the series Settle serves."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from api.metrics import ApiMetrics
from api.metrics_queues import KindStats, QueueSnapshot
from api.metrics_tickets import TicketSnapshot
from domain.metrics import SEED_METRICS, WORKER_EXTRA, samples
from domain.search import OperationKind

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"

ROOT = DEPLOY.parent

#: what the worker serves on WORKER_METRICS_BIND (temporalio's Rust core, durations in seconds,
#: counters with the _total suffix): the names seen scraping a worker that ran a workflow, plus the
#: failure counters that appear once something fails. Histograms add _bucket, _count and _sum.
SDK_COUNTERS = {
    "temporal_request",
    "temporal_request_failure",
    "temporal_long_request",
    "temporal_long_request_failure",
    "temporal_workflow_completed",
    "temporal_workflow_failed",
    "temporal_workflow_canceled",
    "temporal_workflow_continue_as_new",
    "temporal_workflow_task_queue_poll_succeed",
    "temporal_workflow_task_queue_poll_empty",
    "temporal_workflow_task_execution_failed",
    "temporal_activity_task_received",
    "temporal_activity_poll_no_task",
    "temporal_activity_execution_failed",
    "temporal_activity_execution_cancelled",
    "temporal_sticky_cache_hit",
    "temporal_sticky_cache_miss",
    "temporal_worker_start",
}
SDK_COUNTERS = {f"{name}_total" for name in SDK_COUNTERS}
SDK_GAUGES = {
    "temporal_num_pollers",
    "temporal_sticky_cache_size",
    "temporal_worker_task_slots_available",
    "temporal_worker_task_slots_used",
}
SDK_HISTOGRAMS = {
    "temporal_request_latency",
    "temporal_long_request_latency",
    "temporal_workflow_endtoend_latency",
    "temporal_workflow_task_schedule_to_start_latency",
    "temporal_workflow_task_execution_latency",
    "temporal_workflow_task_replay_latency",
    "temporal_activity_schedule_to_start_latency",
    "temporal_activity_execution_latency",
    "temporal_activity_succeed_endtoend_latency",
}
#: Settle's own series on the worker's SDK endpoint: ``worker.CacheMetrics`` gauges, ``runtime.breakers``'s state, and the
#: operation and business counters (``workflows/job_metrics.py``, ``activities/business_metrics.py``)
WORKER_SERIES = {
    "settle_cache_hits_total",
    "settle_cache_misses_total",
    "settle_cache_entries",
    "circuit_breaker_state",
}
WORKER_SERIES |= set(WORKER_EXTRA).union(*(samples(m) for m in SEED_METRICS if m.where == "worker"))
SDK_SERIES = (
    WORKER_SERIES
    | SDK_COUNTERS
    | SDK_GAUGES
    | {f"{h}{suffix}" for h in SDK_HISTOGRAMS for suffix in ("_bucket", "_count", "_sum")}
)

#: PromQL words that look like series names but are not
_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or"}
_PROMQL_WORDS |= {"unless", "bool", "offset", "inf", "nan"}


def settle_series() -> set[str]:
    """Every series name the API's /metrics can serve, from a registry with every figure set."""
    metrics = ApiMetrics()
    metrics.queues.last = QueueSnapshot(
        kinds={kind.value: KindStats(durations=[1.0]) for kind in OperationKind}
    )
    metrics.tickets.last = TicketSnapshot(
        payments={"usd": (1, 100)},
        refunds={"usd": (1, 100)},
        solana_balance_sol=1.0,
        treasury_usdc=1.0,
    )
    metrics.breakers.last = {"stripe": 1}
    metrics.requests.labels("GET", "/", "200").inc()
    metrics.latency.labels("GET", "/").observe(0.1)
    metrics.deposits_initiated.inc()
    metrics.mpesa_callbacks.labels("accepted").inc()
    text = generate_latest(metrics.registry).decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def series_in(expr: str) -> set[str]:
    """The series names a PromQL expression reads."""
    expr = re.sub(r'"[^"]*"', "", expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        rest = expr[match.end() :].lstrip()
        if rest.startswith("("):  # a function
            continue
        if match.group(0).lower() not in _PROMQL_WORDS:
            names.add(match.group(0))
    return names


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    return loaded


def alert_rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load((DEPLOY / "prometheus-alerts.yml").read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def test_the_expression_parser_finds_series_only() -> None:
    assert series_in(
        'histogram_quantile(0.99, sum by (le, queue) (rate(x_bucket{queue="a"}[5m]))) > 0.5'
    ) == {"x_bucket"}
    assert series_in("max by (queue) (a) / clamp_min(b, 1) and c >= 5") == {"a", "b", "c"}


def test_dashboard_parses_and_uses_only_exported_series() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and board["panels"]
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    used = set().union(*(series_in(e) for e in exprs))
    known = settle_series() | SDK_SERIES
    assert used - known == set()
    required = {
        "queue_jobs_processed_total",
        "queue_jobs_failed_total",
        "queue_jobs_parked_total",
        "queue_job_processing_duration_seconds_bucket",
        "queue_active_jobs",
        "queue_size",
        "queue_jobs_needs_attention",
        "payments_processed_total",
        "refunds_processed_total",
        "nfts_minted_total",
        "nft_transfers_total",
        "emails_sent_total",
        "emails_failed_total",
        "webhooks_sent_total",
        "webhooks_failed_total",
        "mpesa_deposits_initiated_total",
        "mpesa_callbacks_total",
        "evm_treasury_usdc_balance",
        "solana_wallet_balance_sol",
        "service_memory_usage_bytes",
        "service_cpu_usage_percent",
        "temporal_activity_schedule_to_start_latency_bucket",
    }
    assert required <= used
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p["datasource"]["uid"] == "${datasource}" for p in board["panels"])


def test_alert_rules_parse_and_use_only_exported_series() -> None:
    rules = alert_rules()
    assert rules
    for rule in rules:
        assert set(rule) >= {"alert", "expr", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in {"warning", "critical"}
    used = set().union(*(series_in(rule["expr"]) for rule in rules))
    assert used - (settle_series() | SDK_SERIES) == set()
    assert {
        "queue_size",
        "queue_jobs_failed_total",
        "queue_jobs_processed_total",
        "queue_jobs_needs_attention",
        "evm_treasury_usdc_balance",
        "solana_wallet_balance_sol",
        "circuit_breaker_state",
    } <= used


def test_settle_series_cover_the_required_names() -> None:
    """The API serves its seed metrics; the worker's are checked by scraping a real worker
    (tests/e2e/test_metrics_counters.py)."""
    names = settle_series()
    for metric in SEED_METRICS:
        if metric.where == "api":
            assert samples(metric) <= names, metric.seed
    # visibility-derived figures are gauges with names of their own, never the counters' names
    assert {"queue_closed_jobs", "queue_failed_jobs", "queue_recent_job_duration_seconds"} <= names
    assert not {"queue_jobs_processed_total", "payments_processed_total"} & names


def test_every_operation_kind_has_a_backlog_rule() -> None:
    """Each kind's open executions are watched by some rule on queue_size (issue 15 §7: the
    backlog rule left out credentials, verification and proof)."""
    watched: set[str] = set()
    for rule in alert_rules():
        for matcher in re.findall(r'queue_size\{queue=~?"([^"]+)"\}', rule["expr"]):
            watched |= set(matcher.split("|"))
    assert {kind.value for kind in OperationKind} <= watched


def test_readme_maps_every_seed_metric() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("### Seed metrics") :]
    for metric in SEED_METRICS:
        labels = ", ".join(f"`{label}`" for label in metric.labels) or "none"
        row = f"| `{metric.seed}` | `{metric.exposed}` | {metric.type} | {labels} |"
        assert row in table, row
