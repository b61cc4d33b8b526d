"""Health probes, Prometheus metrics and the OpenAPI page of the running API."""

from __future__ import annotations

import httpx
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.auth import issue_token
from runtime.settings import Settings
from sandbox.serve import serve
from tests.fixtures.stack import Stack


async def test_probes(stack: Stack) -> None:
    assert (await stack.api.get("/health/live")).json() == {"status": "ok"}
    ready = await stack.api.get("/health/ready", headers=stack.platform_admin())
    assert ready.status_code == 200
    checks = ready.json()["checks"]
    assert set(checks) == {
        "database",
        "temporal",
        "search_attributes",
        "smtp",
        "stripe",
        "solana",
        "evm",
        "contracts",
        "treasury",
        "fee_payer",
    }
    assert {name: c["status"] for name, c in checks.items() if c["status"] != "up"} == {}
    # the default: a stack is ready when every operation can run
    assert {name for name, c in checks.items() if c["required"]} == set(checks)
    assert all(c["latency_ms"] >= 0 for c in checks.values())
    startup = await stack.api.get("/health/startup")
    assert startup.status_code == 200 and startup.json()["status"] == "started"


async def ready_with(settings: Settings, temporal: Client) -> httpx.Response:
    server = await serve(create_app(settings, temporal=temporal))
    token = issue_token(settings, subject="ops", tenant="ops", roles=["platform_admin"])
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            return await http.get("/health/ready", headers={"Authorization": f"Bearer {token}"})
    finally:
        await server.stop()


async def test_a_provider_down_is_reported_and_fails_readiness_only_when_required(
    stack: Stack, dev_env: WorkflowEnvironment
) -> None:
    stripe_down = {
        "stripe_api_base": "http://127.0.0.1:9",  # nothing listens there
        "health_required_checks": ["database", "temporal"],
    }
    optional = await ready_with(stack.settings.model_copy(update=stripe_down), dev_env.client)
    assert optional.status_code == 200
    assert optional.json()["checks"]["stripe"]["status"] == "down"
    assert optional.json()["checks"]["stripe"]["required"] is False
    assert "error" in optional.json()["checks"]["stripe"]

    required = stack.settings.model_copy(
        update={**stripe_down, "health_required_checks": ["database", "temporal", "stripe"]}
    )
    refused = await ready_with(required, dev_env.client)
    assert refused.status_code == 503 and refused.json()["status"] == "not_ready"
    assert refused.json()["checks"]["stripe"] | {"latency_ms": 0} == {
        **refused.json()["checks"]["stripe"],
        "status": "down",
        "required": True,
        "latency_ms": 0,
    }


async def test_not_ready_until_the_contracts_are_deployed_and_the_treasury_funded(
    stack: Stack, dev_env: WorkflowEnvironment
) -> None:
    """A fresh chain answers before its contracts exist: the first deposit would park."""
    nothing_there = "0x000000000000000000000000000000000000dEaD"
    settings = stack.settings.model_copy(update={"usdc_contract_address": nothing_there})
    answer = await ready_with(settings, dev_env.client)
    assert answer.status_code == 503 and answer.json()["status"] == "not_ready"
    checks = answer.json()["checks"]
    assert checks["contracts"]["status"] == "down"
    assert "USDC_CONTRACT_ADDRESS" in checks["contracts"]["error"]
    assert checks["treasury"]["status"] == "down"
    assert checks["fee_payer"]["status"] == "up" and checks["database"]["status"] == "up"


async def test_metrics_count_requests_by_route_template(stack: Stack) -> None:
    await stack.api.get("/api/v1/deposit/some-id")  # 401, but counted under its template
    text = (await stack.api.get("/metrics", headers=stack.platform_admin())).text
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
