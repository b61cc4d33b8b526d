"""The operations API's metrics and caches (issue 6, items 6 and 9), through the running stack:
real deposits on the dev server, figures read back over HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from domain.search import OperationKind
from tests.e2e.test_mpesa_deposit_api import PHONE_CANCELLED, initiate
from tests.fixtures.stack import Stack, eventually, unique_tenant

pytestmark = pytest.mark.usefixtures("balanced_ledger")

QUEUE_METRICS = (
    "queue_closed_jobs",
    "queue_failed_jobs",
    "queue_recent_job_duration_seconds",
    "queue_active_jobs",
    "queue_size",
    "queue_jobs_needs_attention",
)
SERVICE_METRICS = (
    "service_uptime_seconds",
    "service_memory_usage_bytes",
    "service_cpu_usage_percent",
)


async def deposit(stack: Stack, headers: dict[str, str], **extra: Any) -> str:
    """An M-Pesa deposit run to its end; its workflow id."""
    response = await initiate(stack, headers, **extra)
    assert response.status_code == 202, response.text
    body = response.json()
    await stack.deposit_handle(body["workflow_id"]).result()
    return str(body["workflow_id"])


async def scrape(stack: Stack) -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """``/metrics`` as {family: {(sample name, labels): value}}."""
    response = await stack.api.get("/metrics", headers=stack.platform_admin())
    assert response.status_code == 200
    return {
        family.name: {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
        for family in text_string_to_metric_families(response.text)
    }


def sample(families: dict[str, Any], family: str, name: str, **labels: str) -> float | None:
    return families.get(family, {}).get((name, tuple(sorted(labels.items()))))


async def test_metrics_include_queue_service_and_business_figures(stack: Stack) -> None:
    tenant = unique_tenant()
    headers = stack.auth("mia", tenant)
    await deposit(stack, headers)
    await deposit(stack, headers, phone=PHONE_CANCELLED)

    kind = OperationKind.MPESA_DEPOSIT.value
    families = await eventually(
        lambda: scrape(stack),
        lambda f: (
            (sample(f, "queue_failed_jobs", "queue_failed_jobs", queue=kind) or 0) >= 1
            and (sample(f, "queue_closed_jobs", "queue_closed_jobs", queue=kind) or 0) >= 2
        ),
        what="the two deposits to show in the queue metrics",
    )
    for name in (*QUEUE_METRICS, *SERVICE_METRICS, "http_requests", "mpesa_deposits_initiated"):
        assert name in families, name
    for name in ("payments_processed", "nfts_minted", "emails_sent", "webhooks_failed"):
        # business counters are the worker's, counted as they happen (test_metrics_counters.py)
        assert name not in families, name
    # visibility counts are gauges of their own name: the API derives no counter from them
    for name in (
        "queue_jobs_processed",
        "queue_jobs_failed",
        "queue_job_processing_duration_seconds",
    ):
        assert name not in families, name
    for every in OperationKind:  # every queue is labelled, even an idle one
        assert sample(families, "queue_size", "queue_size", queue=every.value) is not None
        assert (
            sample(families, "queue_active_jobs", "queue_active_jobs", queue=every.value)
            is not None
        )
    closed = sample(families, "queue_closed_jobs", "queue_closed_jobs", queue=kind)
    failed = sample(families, "queue_failed_jobs", "queue_failed_jobs", queue=kind)
    assert closed is not None and failed is not None and 1 <= failed < closed
    recent = "queue_recent_job_duration_seconds"
    p50 = sample(families, recent, recent, queue=kind, quantile="0.5")
    p99 = sample(families, recent, recent, queue=kind, quantile="0.99")
    assert p50 is not None and p99 is not None and 0 < p50 <= p99 < 600
    # the wallets the "balance low" alerts watch
    assert (sample(families, "evm_treasury_usdc_balance", "evm_treasury_usdc_balance") or 0) > 0
    assert (sample(families, "solana_wallet_balance_sol", "solana_wallet_balance_sol") or 0) > 0
    assert (sample(families, "service_uptime_seconds", "service_uptime_seconds") or 0) > 0
    assert (sample(families, "service_memory_usage_bytes", "service_memory_usage_bytes") or 0) > 1e6
    assert (sample(families, "service_cpu_usage_percent", "service_cpu_usage_percent") or 0) >= 0


async def test_json_endpoints_and_who_may_read_them(stack: Stack) -> None:
    tenant = unique_tenant()
    await deposit(stack, stack.auth("noor", tenant))
    await deposit(stack, stack.auth("noor", tenant), phone=PHONE_CANCELLED)
    admin = stack.auth("ops", tenant, ["admin"])
    platform = stack.auth("root", unique_tenant(), ["platform_admin"])
    paths = ("/metrics/json", "/metrics/queue-stats", "/metrics/system")
    for path in paths:
        assert (await stack.api.get(path)).status_code == 401
        for roles in (["user"], ["venue_admin"]):
            assert (
                await stack.api.get(path, headers=stack.auth("x", tenant, roles))
            ).status_code == 403
    # the service-wide figures are the platform's; a tenant's admin reads its own queue stats
    for path in ("/metrics/json", "/metrics/system"):
        assert (await stack.api.get(path, headers=admin)).status_code == 403
    # Prometheus scrapes with a platform_admin token (or on METRICS_BIND: tests/e2e/test_secrets.py)
    assert (await stack.api.get("/metrics")).status_code == 401
    assert (await stack.api.get("/metrics", headers=stack.platform_admin())).status_code == 200

    kind = OperationKind.MPESA_DEPOSIT.value
    stats = await eventually(
        lambda: stack.api.get("/metrics/queue-stats", headers=admin),
        lambda r: (
            r.status_code == 200 and r.json()[kind]["completed"] + r.json()[kind]["failed"] == 2
        ),
        what="the tenant's deposit in /metrics/queue-stats",
    )
    assert set(stats.json()) == {k.value for k in OperationKind}
    assert stats.json()[kind] == {
        "running": 0,
        "completed": 1,
        "failed": 1,  # the customer cancelled the prompt: the deposit failed
        "needs_attention": 0,
        "cancelled": 0,
    }
    # another tenant's admin sees none of it
    other = stack.auth("ops", unique_tenant(), ["admin"])
    assert (await stack.api.get("/metrics/queue-stats", headers=other)).json()[kind][
        "completed"
    ] == 0

    figures = (await stack.api.get("/metrics/json", headers=platform)).json()
    assert set(figures) >= {"queues", "service", "tickets", "mpesa_deposits_initiated_total"}
    mpesa = figures["queues"][kind]
    assert set(mpesa) == {
        "processed_total",
        "failed_total",
        "active_jobs",
        "queue_size",
        "needs_attention",
        "processing_duration_seconds",
    }
    assert mpesa["processed_total"] >= 1
    assert mpesa["processing_duration_seconds"]["buckets"]["+Inf"] >= 1
    assert figures["mpesa_deposits_initiated_total"] >= 1
    assert "nfts_minted_total" in figures["tickets"]

    system = (await stack.api.get("/metrics/system", headers=platform)).json()
    assert set(system) == {
        "uptime_seconds",
        "memory_usage_bytes",
        "cpu_usage_percent",
        "python_version",
        "pid",
    }
    assert system["uptime_seconds"] > 0 and system["memory_usage_bytes"] > 0
    assert system["python_version"].count(".") == 2 and system["pid"] > 0


async def fx_stats(stack: Stack, headers: dict[str, str]) -> dict[str, Any]:
    response = await stack.api.get("/api/v1/cache/stats", headers=headers)
    assert response.status_code == 200, response.text
    caches: dict[str, Any] = response.json()["caches"]
    # the quote is taken when the deposit is initiated, in the API (issue 12 §7)
    return caches["fx_rate_quotes"]


async def test_fx_rate_cache_hits_misses_and_flush(stack: Stack) -> None:
    tenant = unique_tenant()
    user = stack.auth("lee", tenant)
    admin = stack.auth("ops", unique_tenant(), ["platform_admin"])
    for roles in (["user"], ["venue_admin"], ["admin"]):  # the process's caches: the platform's
        headers = stack.auth("x", tenant, roles)
        assert (await stack.api.get("/api/v1/cache/stats", headers=headers)).status_code == 403
        assert (await stack.api.delete("/api/v1/cache/flush", headers=headers)).status_code == 403
    assert (await stack.api.get("/api/v1/cache/stats")).status_code == 401
    assert (await stack.api.delete("/api/v1/cache/flush")).status_code == 401

    flushed = await stack.api.delete("/api/v1/cache/flush", headers=admin)
    assert flushed.status_code == 200
    assert set(flushed.json()["flushed"]) == {"fx_rate", "fx_rate_quotes", "wallet_balances"}
    before = await fx_stats(stack, admin)
    assert before["size"] == 0

    await deposit(stack, user)  # first quote: the rate is read and kept
    first = await fx_stats(stack, admin)
    assert (first["misses"], first["hits"], first["size"]) == (
        before["misses"] + 1,
        before["hits"],
        1,
    )
    await deposit(stack, user)  # second quote within FX_CACHE_SECONDS: from the cache
    second = await fx_stats(stack, admin)
    assert (second["misses"], second["hits"]) == (first["misses"], first["hits"] + 1)
    assert 0 < second["hit_ratio"] <= 1

    assert (await stack.api.delete("/api/v1/cache/flush", headers=admin)).json()["flushed"][
        "fx_rate_quotes"
    ] == 1
    assert (await fx_stats(stack, admin))["size"] == 0
    await deposit(stack, user)  # after the flush: read again
    third = await fx_stats(stack, admin)
    assert (third["misses"], third["hits"]) == (second["misses"] + 1, second["hits"])
