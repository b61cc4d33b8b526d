"""Secrets stay secret (issue 13 §3): probes, metrics and errors, on the API's real socket.

Before: anonymous /health/ready listed every dependency with its error, RPC URLs and their keys
included, and ran every check (an SMTP login, a Stripe call) on each probe; /metrics was open
and any HTTP method became a new label value.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.auth import issue_token
from runtime.settings import Settings
from sandbox.serve import bind_socket
from tests.fixtures.stack import stack_settings

RPC_KEY = "kY7pQ2wE9rT4yU1iO6pA3sD8"


class Api:
    def __init__(self, app: FastAPI, settings: Settings, url: str, metrics_url: str) -> None:
        self.app, self.settings, self.url, self.metrics_url = app, settings, url, metrics_url

    def auth(self, *roles: str) -> dict[str, str]:
        token = issue_token(self.settings, subject="ops", tenant="t1", roles=list(roles))
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def api(database_url: str, dev_env: WorkflowEnvironment) -> AsyncIterator[Api]:
    main, internal = bind_socket("127.0.0.1", 0), bind_socket("127.0.0.1", 0)
    main_url = f"http://127.0.0.1:{main.getsockname()[1]}"
    settings = stack_settings(
        database_url,
        main_url,
        "http://127.0.0.1:9",
        # an RPC whose URL carries its key and answers 404: the check's error quotes the URL
        evm_rpc_url=f"{main_url}/v2/{RPC_KEY}",
        metrics_bind=f"127.0.0.1:{internal.getsockname()[1]}",
        health_cache_seconds=30.0,
        # the EVM check is down on purpose: readiness must not hang on it
        health_required_checks=["database", "temporal"],
    )
    app = create_app(settings, temporal=dev_env.client)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[main, internal]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield Api(app, settings, main_url, f"http://127.0.0.1:{internal.getsockname()[1]}")
    finally:
        server.should_exit = True
        await task


async def test_anonymous_probes_get_the_status_only_and_checks_are_cached(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        assert (await http.get("/health/live")).json() == {"status": "ok"}
        anonymous = await http.get("/health/ready")
        assert anonymous.status_code == 200
        assert anonymous.json() == {"status": "ready"}
        for roles in (("user",), ("admin",)):
            assert (await http.get("/health/ready", headers=api.auth(*roles))).json() == {
                "status": "ready"
            }
        bad_token = await http.get("/health/ready", headers={"Authorization": "Bearer nope"})
        assert bad_token.json() == {"status": "ready"}
        detailed = (await http.get("/health/ready", headers=api.auth("platform_admin"))).json()
    checks: dict[str, Any] = detailed["checks"]
    assert checks["database"]["status"] == "up" and checks["temporal"]["status"] == "up"
    assert checks["evm"]["status"] == "down"
    assert "404" in checks["evm"]["error"]
    assert RPC_KEY not in str(detailed) and "***" in checks["evm"]["error"]
    # six probes, one run of the checks (one Stripe call, one SMTP attempt)
    assert api.app.state.readiness.runs == 1


async def test_metrics_need_a_platform_admin_token_or_the_internal_listener(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        assert (await http.get("/metrics")).status_code == 401
        assert (await http.get("/metrics", headers=api.auth("admin"))).status_code == 403
        for path in ("/metrics/json", "/metrics/system", "/metrics/queue-stats"):
            assert (await http.get(path)).status_code == 401
        # methods nobody routes are counted as "other": no request creates a new series
        for method in ("FOO", "BAR", "PROPFIND"):
            await http.request(method, "/health/live")
        scraped = await http.get("/metrics", headers=api.auth("platform_admin"))
        assert scraped.status_code == 200
    methods = {
        sample.labels["method"]
        for family in text_string_to_metric_families(scraped.text)
        if family.name == "http_requests"
        for sample in family.samples
    }
    assert "other" in methods and not {"FOO", "BAR", "PROPFIND"} & methods
    async with httpx.AsyncClient(base_url=api.metrics_url, timeout=30) as internal:
        assert (await internal.get("/metrics")).status_code == 200
        # the internal listener serves nothing else
        assert (await internal.get("/health/ready")).status_code == 404
        assert (await internal.get("/metrics/json")).status_code == 404
        assert (await internal.post("/api/v1/deposit/initiate", json={})).status_code == 404


def test_metrics_bind_is_parsed() -> None:
    from api.metrics import parse_bind

    assert parse_bind("0.0.0.0:9100") == ("0.0.0.0", 9100)
    assert parse_bind("[::1]:9100") == ("::1", 9100)
    with pytest.raises(ValueError, match="host:port"):
        parse_bind("9100")
