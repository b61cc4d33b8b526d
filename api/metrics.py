"""The API's Prometheus metrics, on a registry of its own (one per app, so tests can build many)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram

from api.metrics_queues import QueueCollector, SystemCollector
from api.metrics_tickets import TicketCollector


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            ["method", "route"],
            registry=self.registry,
        )
        self.deposits_initiated = Counter(
            "mpesa_deposits_initiated_total",
            "M-Pesa deposits started through the API",
            registry=self.registry,
        )
        self.tickets = TicketCollector()
        self.registry.register(self.tickets)
        self.mpesa_callbacks = Counter(
            "mpesa_callbacks_total",
            "Daraja callbacks received, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.queues = QueueCollector()
        self.registry.register(self.queues)
        self.system = SystemCollector()
        self.registry.register(self.system)


def install_metrics(app: FastAPI, metrics: ApiMetrics) -> None:
    @app.middleware("http")
    async def measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        # label by route template, never by raw path (ids would explode the label set)
        path = getattr(route, "path", "unmatched")
        metrics.requests.labels(request.method, path, str(response.status_code)).inc()
        metrics.latency.labels(request.method, path).observe(time.perf_counter() - start)
        return response
