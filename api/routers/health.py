"""Liveness, readiness and startup probes.

Readiness checks the database, Temporal, SMTP, Stripe, the Solana RPC and the EVM RPC, and what
the operations need before the first one can run: Settle's search attributes registered, the
contracts deployed, the treasury holding USDC and gas, the Solana fee payer funded. Each check has
its status and latency. Only those in ``HEALTH_REQUIRED_CHECKS`` make the API not ready. The
default is every check: a local stack (``make run``) is ready when every operation can run at once.
Production lists fewer (the compose file: database and Temporal): taking every API replica out of
service because Stripe is down or the treasury ran low would also stop the status reads and the
callbacks that still work; the Monitor alerts on those instead.
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
from domain.search import ALL_KEYS
from providers.email import Mailer
from providers.evm.erc20 import Erc20
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


def operation_checks(request: Request, temporal: Any) -> dict[str, Callable[[], Awaitable[None]]]:
    """What the first operation of each kind needs (a fresh chain is set up after it answers)."""
    state = request.app.state
    settings: Settings = state.settings

    async def search_attributes() -> None:
        from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

        listed = await temporal.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=temporal.namespace)
        )
        missing = [k.name for k in ALL_KEYS if k.name not in listed.custom_attributes]
        if missing:
            raise RuntimeError(f"search attributes not registered: {', '.join(missing)}")

    async def contracts() -> None:
        named = {
            "USDC_CONTRACT_ADDRESS": settings.usdc_contract_address,
            "CREDENTIAL_REGISTRY_ADDRESS": settings.credential_registry_address,
            "CONTENT_REGISTRY_ADDRESS": settings.content_registry_address,
        }
        codes = await asyncio.gather(
            *(state.evm.rpc("eth_getCode", [address, "latest"]) for address in named.values())
        )
        missing = [name for name, code in zip(named, codes, strict=True) if code in ("0x", "0x0")]
        if missing:
            raise RuntimeError(f"no contract deployed at {', '.join(missing)}")

    async def treasury() -> None:
        usdc = Erc20(state.evm, settings.usdc_contract_address)
        base_units, wei = await asyncio.gather(
            usdc.balance_of(state.treasury_address), state.evm.balance(state.treasury_address)
        )
        if base_units == 0 or wei == 0:
            raise RuntimeError(
                f"treasury {state.treasury_address} holds {base_units} USDC base units "
                f"and {wei} wei of gas"
            )

    async def fee_payer() -> None:
        lamports = await state.solana.balance_lamports()
        if lamports == 0:
            raise RuntimeError("the Solana fee payer holds no SOL")

    return {
        "search_attributes": search_attributes,
        "contracts": contracts,
        "treasury": treasury,
        "fee_payer": fee_payer,
    }


@router.get("/ready", responses={503: {"description": "a required dependency is down"}})
async def ready(
    request: Request, reads: ReadSessionsDep, temporal: TemporalDep, settings: SettingsDep
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
        **operation_checks(request, temporal),
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
