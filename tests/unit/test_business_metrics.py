"""The worker's business counters, recorded from an activity context and read back from a real
Prometheus endpoint of the SDK runtime (the failure counters, which the e2e run does not provoke)."""

from __future__ import annotations

import socket

import httpx
from prometheus_client.parser import text_string_to_metric_families
from temporalio.testing import ActivityEnvironment

from activities import business_metrics
from runtime.temporal import metrics_runtime


async def test_counters_carry_the_old_labels_and_the_total_suffix() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    runtime = metrics_runtime(f"127.0.0.1:{port}")
    env = ActivityEnvironment()
    env.metric_meter = runtime.metric_meter

    def failures() -> None:
        business_metrics.notification("email", "payment_confirmation", "failed")
        business_metrics.notification("email", "payment_confirmation", "failed")
        business_metrics.notification("webhook", "ticket.purchased", "failed")
        business_metrics.refund_made("usd", 700, "mint-failed")
        business_metrics.payment_captured("eur", 0)  # a zero amount adds to the count only

    env.run(failures)
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    samples = {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k in LABELS))): (
            s.value,
            family.type,
        )
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("emails_failed_total", (("type", "payment_confirmation"),))] == (2, "counter")
    assert samples[("webhooks_failed_total", (("event", "ticket.purchased"),))] == (1, "counter")
    assert samples[
        ("refunds_processed_total", (("currency", "USD"), ("reason", "mint-failed")))
    ] == (1, "counter")
    assert samples[("refund_amount_total_cents_total", (("currency", "USD"),))] == (700, "counter")
    assert samples[
        ("payments_processed_total", (("currency", "EUR"), ("status", "succeeded")))
    ] == (1, "counter")
    assert ("payment_amount_total_cents_total", (("currency", "EUR"),)) not in samples


LABELS = {"type", "event", "reason", "status", "currency"}
