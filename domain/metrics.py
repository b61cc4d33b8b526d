"""Metric names and buckets shared by the worker's runtime, workflows and the API."""

from __future__ import annotations

from dataclasses import dataclass

#: upper bounds of the operation duration buckets, seconds (a deposit takes seconds, a watch hours)
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0, 3600.0, 21600.0)
#: the worker's cumulative histogram of operation durations (``workflows/job_metrics.py``)
DURATION_METRIC = "queue_job_processing_duration_seconds"


@dataclass(frozen=True)
class SeedMetric:
    """One metric of the old service and the series Settle serves for it."""

    seed: str
    #: the series name Prometheus stores (a histogram adds _bucket, _count and _sum)
    exposed: str
    type: str  # counter | gauge | histogram
    labels: tuple[str, ...]
    #: which endpoint serves it: the worker's WORKER_METRICS_BIND or the API's /metrics
    where: str


#: every metric of the old service; README's "Seed metrics" table lists the same rows
SEED_METRICS = (
    SeedMetric(
        "queue_jobs_processed_total",
        "queue_jobs_processed_total",
        "counter",
        ("queue", "status"),
        "worker",
    ),
    SeedMetric(
        "queue_jobs_failed_total",
        "queue_jobs_failed_total",
        "counter",
        ("queue", "status"),
        "worker",
    ),
    SeedMetric(DURATION_METRIC, DURATION_METRIC, "histogram", ("queue",), "worker"),
    SeedMetric("queue_active_jobs", "queue_active_jobs", "gauge", ("queue",), "api"),
    SeedMetric("queue_size", "queue_size", "gauge", ("queue",), "api"),
    SeedMetric(
        "payments_processed_total",
        "payments_processed_total",
        "counter",
        ("status", "currency"),
        "worker",
    ),
    SeedMetric(
        "payment_amount_total_cents",
        "payment_amount_total_cents_total",
        "counter",
        ("currency",),
        "worker",
    ),
    SeedMetric(
        "refunds_processed_total",
        "refunds_processed_total",
        "counter",
        ("reason", "currency"),
        "worker",
    ),
    SeedMetric(
        "refund_amount_total_cents",
        "refund_amount_total_cents_total",
        "counter",
        ("currency",),
        "worker",
    ),
    SeedMetric("nfts_minted_total", "nfts_minted_total", "counter", (), "worker"),
    SeedMetric("nft_transfers_total", "nft_transfers_total", "counter", (), "worker"),
    SeedMetric("emails_sent_total", "emails_sent_total", "counter", ("type",), "worker"),
    SeedMetric("emails_failed_total", "emails_failed_total", "counter", ("type",), "worker"),
    SeedMetric("webhooks_sent_total", "webhooks_sent_total", "counter", ("event",), "worker"),
    SeedMetric("webhooks_failed_total", "webhooks_failed_total", "counter", ("event",), "worker"),
    SeedMetric("solana_wallet_balance_sol", "solana_wallet_balance_sol", "gauge", (), "api"),
    SeedMetric(
        "mpesa_deposits_initiated_total", "mpesa_deposits_initiated_total", "counter", (), "api"
    ),
    SeedMetric("mpesa_callbacks_total", "mpesa_callbacks_total", "counter", ("outcome",), "api"),
    SeedMetric(
        "http_requests_total",
        "http_requests_total",
        "counter",
        ("method", "route", "status"),
        "api",
    ),
    SeedMetric(
        "http_request_duration_seconds",
        "http_request_duration_seconds",
        "histogram",
        ("method", "route"),
        "api",
    ),
    SeedMetric("service_uptime_seconds", "service_uptime_seconds", "gauge", (), "api"),
    SeedMetric("service_memory_usage_bytes", "service_memory_usage_bytes", "gauge", (), "api"),
    SeedMetric("service_cpu_usage_percent", "service_cpu_usage_percent", "gauge", (), "api"),
)
#: Settle's counters on the worker's endpoint beyond the old service's
WORKER_EXTRA = ("queue_jobs_parked_total",)


def samples(metric: SeedMetric) -> set[str]:
    """The sample names a metric is scraped as."""
    if metric.type == "histogram":
        return {f"{metric.exposed}{s}" for s in ("_bucket", "_count", "_sum")}
    return {metric.exposed}
