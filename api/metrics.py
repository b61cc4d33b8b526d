"""The API's Prometheus metrics, on a registry of its own (one per app, so tests can build many)."""

from __future__ import annotations

import time

from fastapi import FastAPI, Response
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics_breakers import BreakerCollector
from api.metrics_queues import QueueCollector, SystemCollector
from api.metrics_tickets import TicketCollector

#: any other method is counted as ``other``: no request can create a new label value
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "other"


def parse_bind(bind: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9100`` for IPv6)."""
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"METRICS_BIND must be host:port, not {bind!r}")
    return host.strip("[]"), int(port)


def on_metrics_listener(scope: Scope, settings_bind: str | None) -> bool:
    """Whether the request came in on METRICS_BIND's listener (same app, second socket)."""
    if not settings_bind:
        return False
    server = scope.get("server")
    return server is not None and server[1] == parse_bind(settings_bind)[1]


class MetricsListenerOnly:
    """On the METRICS_BIND listener only ``/metrics`` is served; everything else is a 404."""

    def __init__(self, app: ASGIApp, *, bind: str | None) -> None:
        self.app, self.bind = app, bind

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and on_metrics_listener(scope, self.bind)
            and scope.get("path") != "/metrics"
        ):
            response = Response(status_code=404)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


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
        self.breakers = BreakerCollector()
        self.registry.register(self.breakers)


def install_metrics(app: FastAPI, metrics: ApiMetrics) -> None:
    app.add_middleware(_Measure, metrics=metrics)


class _Measure:
    """Counts and times every HTTP request by route template.

    A plain ASGI middleware: ``@app.middleware("http")`` (Starlette's ``BaseHTTPMiddleware``)
    runs each request through a task group and memory streams, a visible share of the API's CPU
    per request in the accept-latency profiles. As before, a request whose handler raised (the
    500 answered by the server's error middleware, outside this one) is not counted."""

    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        await self.app(scope, receive, send_status)
        route = scope.get("route")
        # label by route template, never by raw path (ids would explode the label set)
        path = getattr(route, "path", "unmatched")
        method = method_label(str(scope.get("method", "")))
        self.metrics.requests.labels(method, path, str(status)).inc()
        self.metrics.latency.labels(method, path).observe(time.perf_counter() - start)
