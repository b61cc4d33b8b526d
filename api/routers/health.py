"""Liveness, readiness and startup probes.

Readiness checks the database, Temporal, SMTP, Stripe, the Solana RPC and the EVM RPC, each with
its status and latency. Only those in ``HEALTH_REQUIRED_CHECKS`` (database and Temporal by
default) make the API not ready: taking every API replica out of service because Stripe is
down would also stop the status reads and the callbacks that still work.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import ReadSessionsDep, SettingsDep, TemporalDep
from providers.email import Mailer
from providers.stripe import StripePayments
from runtime.settings import Settings
from store.migrate import current_revision, head_revision

router = APIRouter(prefix="/health", tags=["health"])

CHECK_TIMEOUT_SECONDS = 3.0


async def timed_check(name: str, check: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_SECONDS)
        ok, error = True, None
    except Exception as exc:
        ok, error = False, f"{type(exc).__name__}: {exc}"[:300]
    result: dict[str, Any] = {
        "name": name,
        "status": "up" if ok else "down",
        "latency_ms": round((time.perf_counter() - start) * 1000, 1),
    }
    if error:
        result["error"] = error
    return result


@router.get("/live")
async def live() -> dict[str, str]:
    """The process answers: nothing else is checked."""
    return {"status": "ok"}


async def json_rpc(url: str, method: str) -> Any:
    """One JSON-RPC call; an error object or a non-2xx answer is a failed check."""
    async with httpx.AsyncClient(timeout=CHECK_TIMEOUT_SECONDS) as http:
        response = await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method})
        response.raise_for_status()
        body = response.json()
    if "error" in body:
        raise RuntimeError(f"{method}: {body['error']}")
    return body["result"]


def provider_checks(settings: Settings) -> dict[str, Callable[[], Awaitable[None]]]:
    async def smtp() -> None:
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        mailer = Mailer(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.email_from,
            security=settings.smtp_security,
            username=settings.smtp_username,
            password=password,
            timeout_seconds=CHECK_TIMEOUT_SECONDS,
        )
        await mailer.check_reachable()

    async def stripe() -> None:
        payments = StripePayments(
            settings.stripe_api_key.get_secret_value(),
            api_base=settings.stripe_api_base,
            timeout_seconds=CHECK_TIMEOUT_SECONDS,
        )
        await payments.check_reachable()

    async def solana() -> None:
        health = await json_rpc(settings.solana_rpc_url, "getHealth")
        if health != "ok":
            raise RuntimeError(f"getHealth answered {health!r}")

    async def evm() -> None:
        await json_rpc(settings.evm_rpc_url, "eth_blockNumber")

    return {"smtp": smtp, "stripe": stripe, "solana": solana, "evm": evm}


@router.get("/ready", responses={503: {"description": "a required dependency is down"}})
async def ready(
    reads: ReadSessionsDep, temporal: TemporalDep, settings: SettingsDep
) -> JSONResponse:
    """Every dependency with status, latency and whether it is required; 503 when a required one
    is down."""

    async def database() -> None:
        async with reads() as session:
            await session.execute(text("SELECT 1"))

    async def temporal_server() -> None:
        healthy = await temporal.service_client.check_health(
            timeout=timedelta(seconds=CHECK_TIMEOUT_SECONDS)
        )
        if not healthy:
            raise RuntimeError("Temporal reports not serving")

    probes: dict[str, Callable[[], Awaitable[None]]] = {
        "database": database,
        "temporal": temporal_server,
        **provider_checks(settings),
    }
    checks = await asyncio.gather(*(timed_check(name, probe) for name, probe in probes.items()))
    required = set(settings.health_required_checks)
    for check in checks:
        check["required"] = check["name"] in required
    ready_ = all(c["status"] == "up" for c in checks if c["required"])
    return JSONResponse(
        {
            "status": "ready" if ready_ else "not_ready",
            "checks": {c.pop("name"): c for c in checks},
        },
        status_code=200 if ready_ else 503,
    )


@router.get("/startup", responses={503: {"description": "still starting or schema not at head"}})
async def startup(request: Request) -> JSONResponse:
    """Started when the app's lifespan ran and the database schema is at the migrations' head."""
    if not getattr(request.app.state, "started", False):
        return JSONResponse({"status": "starting"}, status_code=503)
    try:
        current = await current_revision(request.app.state.engine)
    except Exception as exc:
        return JSONResponse(
            {"status": "database_unreachable", "error": str(exc)[:300]}, status_code=503
        )
    head = head_revision()
    if current != head:
        return JSONResponse(
            {"status": "schema_behind", "current": current, "head": head, "fix": "make migrate"},
            status_code=503,
        )
    return JSONResponse({"status": "started", "schema": current})
