"""OpenTelemetry tracing: one trace from the HTTP request through the workflow and its activities
to the provider call, exported over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.

Off by default, and then nothing is instrumented: no span is created, no hook runs. When on:

- the API's requests (FastAPI), every ``httpx`` call (Daraja, Stripe, the RPCs, IPFS, webhooks)
  and the database engines Settle makes (SQLAlchemy) make spans;
- the Temporal client carries the SDK's ``TracingInterceptor``, so a workflow started inside a
  request continues that request's trace, and its activities continue the workflow's;
- every log line carries ``trace_id`` and ``span_id`` (``runtime.logging.add_trace_ids``, always
  installed: outside a span it adds nothing).

Spans leave the process through :class:`RedactingExporter`: URLs and names go through
:func:`runtime.redact.redact` like log lines do (the M-Pesa callback path carries a secret token,
RPC URLs may carry keys).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
    SpanProcessor,
)

from runtime.redact import redact

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy.ext.asyncio import AsyncEngine
    from temporalio.client import Interceptor

    from runtime.settings import Settings

_installed: TracerProvider | None = None


def enabled() -> bool:
    """Whether this process traces (``install`` ran with an endpoint or an exporter)."""
    return _installed is not None


def _redact_attribute(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, tuple | list) and all(isinstance(v, str) for v in value):
        return tuple(redact(v) for v in value)
    return value


class RedactingExporter(SpanExporter):
    """Hands ``inner`` copies of the spans with their name, string attributes and event
    attributes redacted: the one boundary every span crosses on its way out."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    @staticmethod
    def clean(span: ReadableSpan) -> ReadableSpan:
        attributes = {k: _redact_attribute(v) for k, v in (span.attributes or {}).items()}
        return ReadableSpan(
            name=redact(span.name),
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=attributes,
            events=span.events,
            links=span.links,
            kind=span.kind,
            status=span.status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([self.clean(span) for span in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def install(
    settings: Settings, service: str, *, processor: SpanProcessor | None = None
) -> TracerProvider | None:
    """Trace this process if ``settings`` name an OTLP endpoint (or a test passes its own
    ``processor``); returns the provider, or None when tracing stays off. Once per process:
    OpenTelemetry's global provider cannot be replaced."""
    global _installed
    if _installed is not None:
        return _installed
    endpoint = settings.otel_exporter_otlp_endpoint
    if processor is None and not endpoint:
        return None
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"{settings.otel_service_name}-{service}"})
    )
    if processor is not None:
        provider.add_span_processor(processor)
    if endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")
        provider.add_span_processor(BatchSpanProcessor(RedactingExporter(exporter)))
    trace.set_tracer_provider(provider)
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    _installed = provider
    return provider


def uninstall() -> None:
    """Stop instrumenting ``httpx`` (tests that traced one scenario). The global provider stays,
    without instrumentation it makes no spans."""
    global _installed
    if _installed is None:
        return
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor().uninstrument()
    _installed.force_flush()
    _installed = None


def temporal_interceptors() -> list[Interceptor]:
    """The Temporal client's interceptors: the SDK's tracing one when tracing is on."""
    if _installed is None:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(_installed.get_tracer("settle.temporal"))]


def instrument_engine(engine: AsyncEngine) -> None:
    """Database spans for ``engine`` when tracing is on: one client span per statement, with the
    statement's text (never its parameters). Written on SQLAlchemy's cursor events rather than
    with opentelemetry-instrumentation-sqlalchemy, which refuses SQLAlchemy 2.1."""
    if _installed is None:
        return
    from sqlalchemy import event

    tracer = _installed.get_tracer("settle.database")
    database = engine.url.database or ""

    def before(conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool):
        operation = statement.split(None, 1)[0].upper() if statement.strip() else "SQL"
        span = tracer.start_span(
            f"{operation} {database}".strip(),
            kind=trace.SpanKind.CLIENT,
            attributes={
                "db.system": "postgresql",
                "db.name": database,
                "db.operation": operation,
                "db.statement": statement[:2000],
            },
        )
        context._settle_span = span

    def after(conn: Any, _cursor: Any, _statement: str, _params: Any, context: Any, _many: bool):
        span = getattr(context, "_settle_span", None)
        if span is not None:
            span.end()

    def failed(exception_context: Any) -> None:
        context = exception_context.execution_context
        span = getattr(context, "_settle_span", None) if context is not None else None
        if span is not None:
            span.set_status(
                trace.Status(
                    trace.StatusCode.ERROR, type(exception_context.original_exception).__name__
                )
            )
            span.end()

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    event.listen(engine.sync_engine, "after_cursor_execute", after)
    event.listen(engine.sync_engine, "handle_error", failed)


def instrument_app(app: FastAPI) -> None:
    """A server span per API request when tracing is on."""
    if _installed is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, tracer_provider=_installed)
