"""Health probes, Prometheus metrics and the OpenAPI page of the running API."""

from __future__ import annotations

from tests.fixtures.stack import Stack


async def test_probes(stack: Stack) -> None:
    assert (await stack.api.get("/health/live")).json() == {"status": "ok"}
    ready = await stack.api.get("/health/ready")
    assert ready.status_code == 200
    checks = ready.json()["checks"]
    assert checks["database"]["status"] == "up" and checks["temporal"]["status"] == "up"
    assert all(c["latency_ms"] >= 0 for c in checks.values())
    startup = await stack.api.get("/health/startup")
    assert startup.status_code == 200 and startup.json()["status"] == "started"


async def test_metrics_count_requests_by_route_template(stack: Stack) -> None:
    await stack.api.get("/api/v1/deposit/some-id")  # 401, but counted under its template
    text = (await stack.api.get("/metrics")).text
    assert (
        'http_requests_total{method="GET",route="/api/v1/deposit/{deposit_id}",status="401"}'
        in text
    )
    assert "mpesa_deposits_initiated_total" in text


async def test_openapi_documents_the_deposit_api(stack: Stack) -> None:
    schema = (await stack.api.get("/openapi.json")).json()
    initiate = schema["paths"]["/api/v1/deposit/initiate"]["post"]
    assert {"202", "401", "422"} <= set(initiate["responses"])
    assert (await stack.api.get("/docs")).status_code == 200
