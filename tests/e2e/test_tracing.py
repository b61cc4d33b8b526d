"""Tracing (issue 15 §8): one M-Pesa deposit makes one trace, from the API's HTTP request through
the workflow and its activities to the call to Daraja, and the spans leave without the callback
token. An API and a worker are built in this process, like the stack's, but with tracing installed
and an in-memory exporter, on their own task queues."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from temporalio.client import Client

import worker as worker_module
from api.app import create_app
from domain.mpesa import DepositStatus
from domain.queues import all_queue_names
from runtime import tracing
from runtime.logging import add_trace_ids
from sandbox.serve import serve
from tests.fixtures.chain import new_wallet
from tests.fixtures.stack import Stack, codec_client, unique_tenant
from tests.fixtures.temporal import new_prefix

PHONE_OK = "254708374149"


@dataclass
class Traced:
    api: httpx.AsyncClient
    spans: InMemorySpanExporter


@pytest.fixture
async def traced(stack: Stack) -> AsyncIterator[Traced]:
    spans = InMemorySpanExporter()
    processor = SimpleSpanProcessor(tracing.RedactingExporter(spans))
    assert tracing.install(stack.settings, "test", processor=processor) is not None
    settings = stack.settings.model_copy(update={"task_queue_prefix": new_prefix()})
    assert stack.plain_temporal is not None
    config = codec_client(stack.plain_temporal, settings).config()
    config["interceptors"] = tracing.temporal_interceptors()
    client = Client(**config)
    resources = worker_module.build_resources(settings)
    workers = worker_module.build_workers(client, settings, resources, all_queue_names())
    runs = [asyncio.create_task(w.run()) for w in workers]
    server = await serve(create_app(settings, temporal=client, caches=resources.caches))
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            yield Traced(http, spans)
    finally:
        await server.stop()
        await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
        await asyncio.gather(*runs, return_exceptions=True)
        await resources.aclose()
        tracing.uninstall()


def _attribute_text(span: ReadableSpan) -> str:
    return " ".join(f"{k}={v!s}" for k, v in (span.attributes or {}).items())


async def test_one_deposit_is_one_trace_from_request_to_daraja(
    stack: Stack, traced: Traced
) -> None:
    headers = stack.auth("tracy", unique_tenant())
    body = {"phone": PHONE_OK, "amount": 150, "wallet_address": new_wallet()}
    response = await traced.api.post("/api/v1/deposit/initiate", json=body, headers=headers)
    assert response.status_code == 202, response.text
    deposit_id = response.json()["id"]
    await stack.wait_for_deposit(deposit_id, {DepositStatus.CREDITED}, timeout=60)

    spans = traced.spans.get_finished_spans()
    requests = [
        s
        for s in spans
        if s.kind == SpanKind.SERVER and "/api/v1/deposit/initiate" in s.name and s.context
    ]
    assert len(requests) == 1, [s.name for s in spans]
    request = requests[0]
    assert request.context is not None
    in_trace = [s for s in spans if s.context and s.context.trace_id == request.context.trace_id]
    names = [s.name for s in in_trace]
    workflow_id = f"mpesa-deposit-{deposit_id}"
    assert any(n.startswith("StartWorkflow:MpesaDeposit") for n in names), names
    assert any(n.startswith("RunWorkflow:MpesaDeposit") for n in names), names
    assert any(n.startswith("RunActivity:") for n in names), names
    daraja_calls = [
        s for s in in_trace if s.kind == SpanKind.CLIENT and "stkpush" in _attribute_text(s).lower()
    ]
    assert daraja_calls, f"no Daraja STK push span in the request's trace: {names}"
    # the workflow's spans carry its id; the database calls of the request are in the trace too
    assert any(workflow_id in _attribute_text(s) for s in in_trace), names
    assert any((s.attributes or {}).get("db.system") == "postgresql" for s in in_trace), names
    # one deposit, one trace: no activity of this workflow started a trace of its own
    stray = [
        s
        for s in spans
        if s.name.startswith("RunActivity:")
        and workflow_id in _attribute_text(s)
        and s.context
        and s.context.trace_id != request.context.trace_id
    ]
    assert not stray, [s.name for s in stray]


async def test_exported_spans_carry_no_callback_token() -> None:
    """The M-Pesa callback path's secret token is masked in what leaves the process."""
    captured = InMemorySpanExporter()
    exporter = tracing.RedactingExporter(captured)
    span = ReadableSpan(
        name="POST /api/v1/deposit/mpesa-callback/s3cr3t-token-value",
        attributes={"url.path": "/api/v1/deposit/mpesa-callback/s3cr3t-token-value", "n": 3},
    )
    exporter.export([span])
    (clean,) = captured.get_finished_spans()
    assert "s3cr3t" not in clean.name
    assert clean.attributes is not None
    assert "s3cr3t" not in str(clean.attributes["url.path"])
    assert clean.attributes["n"] == 3


def test_log_lines_carry_the_trace_and_span_ids() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("step") as span:
        event = add_trace_ids(None, "info", {"event": "hello"})
        context = span.get_span_context()
    assert context.is_valid
    assert event["trace_id"] == format(context.trace_id, "032x")
    assert event["span_id"] == format(context.span_id, "016x")
    outside = add_trace_ids(None, "info", {"event": "hello"})
    assert "trace_id" not in outside
