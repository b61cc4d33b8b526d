"""Queue metrics (one "queue" per operation kind, as the old BullMQ queues were), computed from
Temporal visibility when they are asked for, plus the process's own figures.

Visibility is the source because it is the only place that sees every execution of every worker
process, whatever its outcome (the database has rows for some operations only). One refresh costs
a fixed number of calls, whatever the traffic: per kind, four ``count_workflows`` and one
``list_workflows`` page (at most :data:`DURATION_SAMPLE` executions), made concurrently, and its
result is reused for ``METRICS_CACHE_SECONDS``.

What the names mean (``queue`` label = ``SettleKind``). Every one is a **gauge**: a count of what
visibility holds now, which drops when the namespace's retention (``TEMPORAL_RETENTION_DAYS``)
removes closed executions. The counters (``queue_jobs_processed_total``,
``queue_jobs_failed_total``, the cumulative ``queue_job_processing_duration_seconds`` histogram)
are counted by the worker when an operation ends (``workflows/job_metrics.py``) and served on the
worker's own endpoint.

* ``queue_closed_jobs``: closed executions visible, whatever their outcome (a continued-as-new
  run is not counted: the operation goes on in the next run).
* ``queue_failed_jobs``: closed executions visible that failed: ``SettleStatus`` ``failed`` or
  ``abandoned``, or Temporal's Failed, Terminated or TimedOut. A subset of the closed ones.
* ``queue_active_jobs``: open executions working normally (``SettleStatus`` ``running``).
* ``queue_size``: every open execution, parked ones included (Temporal has no "waiting" state:
  a started workflow is in progress, so the backlog is what has not finished).
* ``queue_jobs_needs_attention``: open executions parked for an operator.
* ``queue_recent_job_duration_seconds{quantile}``: 0.5, 0.9 and 0.99 quantiles of start to close
  of the executions that closed in the last ``METRICS_DURATION_WINDOW_SECONDS`` (at most
  :data:`DURATION_SAMPLE` per kind, newest first); absent for a kind with none.

Counts are eventually consistent (visibility lags the executions by a moment).
"""

from __future__ import annotations

import asyncio
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

import psutil
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from temporalio.client import Client, WorkflowExecutionStatus

from api.jobs_lookup import bounded, quote
from domain.metrics import DURATION_BUCKETS
from domain.search import OperationKind, OperationStatus

#: executions read per kind for the duration histogram
DURATION_SAMPLE = 500
#: the quantiles of the recent durations served as gauges
QUANTILES = (0.5, 0.9, 0.99)

_CLOSED = 'ExecutionStatus != "Running" AND ExecutionStatus != "ContinuedAsNew"'
_FAILED = (
    f"{_CLOSED} AND (SettleStatus IN "
    f"({quote(OperationStatus.FAILED)}, {quote(OperationStatus.ABANDONED)})"
    ' OR ExecutionStatus IN ("Failed", "Terminated", "TimedOut"))'
)
_CANCELLED = (
    f"{_CLOSED} AND (SettleStatus = {quote(OperationStatus.CANCELLED)}"
    ' OR ExecutionStatus = "Canceled")'
)
_PARKED = f'ExecutionStatus = "Running" AND SettleStatus = {quote(OperationStatus.NEEDS_ATTENTION)}'


@dataclass
class KindStats:
    """One operation kind's counts; ``durations`` are seconds of recently closed executions."""

    open: int = 0
    processed: int = 0
    failed: int = 0
    cancelled: int = 0
    needs_attention: int = 0
    durations: list[float] = field(default_factory=list)

    @property
    def active(self) -> int:
        return max(self.open - self.needs_attention, 0)

    @property
    def completed(self) -> int:
        """Closed without failing or being cancelled."""
        return max(self.processed - self.failed - self.cancelled, 0)

    def queue_stats(self) -> dict[str, int]:
        return {
            "running": self.active,
            "completed": self.completed,
            "failed": self.failed,
            "needs_attention": self.needs_attention,
            "cancelled": self.cancelled,
        }


@dataclass
class QueueSnapshot:
    kinds: dict[str, KindStats] = field(default_factory=dict)
    taken_at: float = 0.0


def _and(scope: str, clause: str) -> str:
    return f"{scope} AND {clause}" if scope else clause


async def _kind_stats(
    client: Client, kind: OperationKind, scope: str, window: timedelta
) -> KindStats:
    base = _and(scope, f"SettleKind = {quote(kind.value)}")
    since = (datetime.now(UTC) - window).strftime("%Y-%m-%dT%H:%M:%SZ")

    async def grouped() -> KindStats:
        stats = KindStats()
        result = await client.count_workflows(f"{base} GROUP BY ExecutionStatus")
        for group in result.groups:
            status = str(group.group_values[0]) if group.group_values else ""
            if status == "Running":
                stats.open += group.count
            elif status != "ContinuedAsNew":
                stats.processed += group.count
        return stats

    async def count(clause: str) -> int:
        return (await client.count_workflows(f"{base} AND {clause}")).count

    async def durations() -> list[float]:
        query = f'{base} AND {_CLOSED} AND CloseTime > "{since}"'
        seconds: list[float] = []
        async for execution in client.list_workflows(
            query, limit=DURATION_SAMPLE, page_size=DURATION_SAMPLE
        ):
            if execution.close_time is not None and execution.status not in (
                WorkflowExecutionStatus.RUNNING,
                WorkflowExecutionStatus.CONTINUED_AS_NEW,
            ):
                seconds.append(
                    max((execution.close_time - execution.start_time).total_seconds(), 0)
                )
        return seconds

    stats, failed, cancelled, parked, took = await asyncio.gather(
        grouped(), count(_FAILED), count(_CANCELLED), count(_PARKED), durations()
    )
    stats.failed, stats.cancelled, stats.needs_attention, stats.durations = (
        failed,
        cancelled,
        parked,
        took,
    )
    return stats


async def take_snapshot(client: Client, scope: str, window: timedelta) -> QueueSnapshot:
    """Every kind's stats within ``scope`` (a visibility clause, "" for the whole service)."""
    kinds = list(OperationKind)
    results = await bounded(kinds, lambda kind: _kind_stats(client, kind, scope, window))
    return QueueSnapshot(
        kinds={kind.value: stats for kind, stats in zip(kinds, results, strict=True)},
        taken_at=time.time(),
    )


class QueueStatsCache:
    """Snapshots by scope, reused for ``ttl_seconds``; concurrent askers share one refresh."""

    def __init__(self, ttl_seconds: float, window: timedelta) -> None:
        self.ttl = ttl_seconds
        self.window = window
        self._taken: dict[str, tuple[float, QueueSnapshot]] = {}
        self._lock = asyncio.Lock()

    async def get(self, client: Client, scope: str = "") -> QueueSnapshot:
        async with self._lock:
            cached = self._taken.get(scope)
            if cached is not None and time.monotonic() - cached[0] < self.ttl:
                return cached[1]
            snapshot = await take_snapshot(client, scope, self.window)
            self._taken[scope] = (time.monotonic(), snapshot)
            if len(self._taken) > 1000:  # one entry per tenant asking: keep it bounded
                self._taken.pop(next(iter(self._taken)))
            return snapshot


def histogram_buckets(durations: list[float]) -> list[tuple[str, float]]:
    buckets: list[tuple[str, float]] = []
    for bound in DURATION_BUCKETS:
        buckets.append((str(bound), float(sum(1 for d in durations if d <= bound))))
    buckets.append(("+Inf", float(len(durations))))
    return buckets


def quantiles(durations: list[float]) -> dict[float, float]:
    """Nearest-rank quantiles of ``durations`` (none for an empty sample)."""
    if not durations:
        return {}
    ordered = sorted(durations)
    return {
        q: ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] for q in QUANTILES
    }


class QueueCollector(Collector):
    """Yields the queue metrics of the last service-wide snapshot (refreshed by the handler)."""

    def __init__(self) -> None:
        self.last: QueueSnapshot | None = None

    def collect(self) -> Iterator[Metric]:
        if self.last is None:
            return
        closed = GaugeMetricFamily(
            "queue_closed_jobs",
            "Closed executions Temporal visibility still holds, by operation kind",
            labels=["queue"],
        )
        failed = GaugeMetricFamily(
            "queue_failed_jobs",
            "Closed executions visibility still holds that failed, by kind",
            labels=["queue"],
        )
        active = GaugeMetricFamily(
            "queue_active_jobs", "Open executions working normally", labels=["queue"]
        )
        size = GaugeMetricFamily(
            "queue_size", "Open executions, parked ones included", labels=["queue"]
        )
        parked = GaugeMetricFamily(
            "queue_jobs_needs_attention", "Open executions parked for an operator", labels=["queue"]
        )
        recent = GaugeMetricFamily(
            "queue_recent_job_duration_seconds",
            "Quantiles of start to close of the executions closed in the recent window",
            labels=["queue", "quantile"],
        )
        for kind, stats in self.last.kinds.items():
            closed.add_metric([kind], stats.processed)
            failed.add_metric([kind], stats.failed)
            active.add_metric([kind], stats.active)
            size.add_metric([kind], stats.open)
            parked.add_metric([kind], stats.needs_attention)
            for q, value in quantiles(stats.durations).items():
                recent.add_metric([kind, str(q)], value)
        yield from (closed, failed, active, size, parked, recent)


@dataclass
class SystemStats:
    uptime_seconds: float
    memory_usage_bytes: int
    cpu_usage_percent: float
    python_version: str
    pid: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class SystemCollector(Collector):
    """This process's uptime, resident memory and CPU use (since the previous reading)."""

    def __init__(self) -> None:
        self._process = psutil.Process(os.getpid())
        self._process.cpu_percent(None)  # the first reading is always 0: start the clock

    def read(self) -> SystemStats:
        with self._process.oneshot():
            return SystemStats(
                uptime_seconds=max(time.time() - self._process.create_time(), 0.0),
                memory_usage_bytes=int(self._process.memory_info().rss),
                cpu_usage_percent=float(self._process.cpu_percent(None)),
                python_version=platform.python_version(),
                pid=self._process.pid,
            )

    def collect(self) -> Iterator[Metric]:
        stats = self.read()
        yield GaugeMetricFamily(
            "service_uptime_seconds", "Seconds since this process started", stats.uptime_seconds
        )
        yield GaugeMetricFamily(
            "service_memory_usage_bytes",
            "Resident memory of this process",
            stats.memory_usage_bytes,
        )
        yield GaugeMetricFamily(
            "service_cpu_usage_percent",
            "CPU use of this process since the previous reading (100 = one core)",
            stats.cpu_usage_percent,
        )
