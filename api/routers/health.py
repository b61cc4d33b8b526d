"""Liveness, readiness and startup probes.

Readiness checks the database, Temporal, SMTP, Stripe, the Solana RPC and the EVM RPC, and what
the operations need before the first one can run: Settle's search attributes registered, the
contracts deployed, the treasury holding USDC and gas, the Solana fee payer funded. Each check has
its status and latency, shown to ``platform_admin`` tokens only (anonymous probes get the status).
Only those in ``HEALTH_REQUIRED_CHECKS`` make the API not ready. The default is every check: a
local stack (``make run``) is ready when every operation can run at once. Production lists fewer
(the compose file): taking every API replica out of service because Stripe is down or the
treasury ran low would also stop the status reads and the callbacks that still work; the Monitor
alerts on those instead.
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
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.auth import decode_token
from api.deps import ReadSessionsDep, SettingsDep, TemporalDep
from domain.errors import Unauthorized
from domain.search import ALL_KEYS
from providers.email import Mailer
from providers.evm.erc20 import Erc20
from providers.stripe import StripePayments
from runtime.logging import get_logger
from runtime.redact import redact
from runtime.settings import Settings
from store.migrate import current_revision, head_revision

router = APIRouter(prefix="/health", tags=["health"])
log = get_logger("api.health")

CHECK_TIMEOUT_SECONDS = 3.0


async def timed_check(name: str, check: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_SECONDS)
        ok, error = True, None
    except Exception as exc:
        ok, error = False, redact(f"{type(exc).__name__}: {exc}")[:300]
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


class Readiness:
    """The readiness checks with their clients, built once per app (one HTTP client for the
    RPCs, one Stripe client, one kept SMTP connection), and the last answer, reused for
    ``HEALTH_CACHE_SECONDS``: probes, however frequent, cannot multiply calls to providers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._http = httpx.AsyncClient(timeout=CHECK_TIMEOUT_SECONDS, follow_redirects=False)
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        self._mailer = Mailer(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.email_from,
            security=settings.smtp_security,
            username=settings.smtp_username,
            password=password,
            timeout_seconds=CHECK_TIMEOUT_SECONDS,
        )
        self._stripe = StripePayments(
            settings.stripe_api_key.get_secret_value(),
            api_base=settings.stripe_api_base,
            timeout_seconds=CHECK_TIMEOUT_SECONDS,
        )
        self._lock = asyncio.Lock()
        self._answer: tuple[float, bool, dict[str, Any]] | None = None
        #: how many times the checks really ran (the tests count them)
        self.runs = 0

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._mailer.aclose()

    async def json_rpc(self, url: str, method: str) -> Any:
        """One JSON-RPC call; an error object or a non-2xx answer is a failed check."""
        response = await self._http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method})
        response.raise_for_status()
        body = response.json()
        if "error" in body:
            raise RuntimeError(f"{method}: {body['error']}")
        return body["result"]

    def provider_checks(self) -> dict[str, Callable[[], Awaitable[None]]]:
        settings = self.settings

        async def solana() -> None:
            health = await self.json_rpc(settings.solana_rpc_url, "getHealth")
            if health != "ok":
                raise RuntimeError(f"getHealth answered {health!r}")

        async def evm() -> None:
            await self.json_rpc(settings.evm_rpc_url, "eth_blockNumber")

        return {
            "smtp": self._mailer.check_reachable,
            "stripe": self._stripe.check_reachable,
            "solana": solana,
            "evm": evm,
        }

    async def check(
        self, reads: async_sessionmaker[AsyncSession], temporal: Client, state: Any
    ) -> tuple[bool, dict[str, Any]]:
        async with self._lock:  # concurrent probes wait for one run
            now = time.monotonic()
            if self._answer and now - self._answer[0] < self.settings.health_cache_seconds:
                return self._answer[1], self._answer[2]
            ready_, checks = await self._run(reads, temporal, state)
            self._answer = (time.monotonic(), ready_, checks)
            return ready_, checks

    async def _run(
        self, reads: async_sessionmaker[AsyncSession], temporal: Client, state: Any
    ) -> tuple[bool, dict[str, Any]]:
        self.runs += 1

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
            **self.provider_checks(),
            **operation_checks(self.settings, temporal, state),
        }
        checks = await asyncio.gather(*(timed_check(name, probe) for name, probe in probes.items()))
        required = set(self.settings.health_required_checks)
        for check in checks:
            check["required"] = check["name"] in required
        ready_ = all(c["status"] == "up" for c in checks if c["required"])
        return ready_, {c.pop("name"): c for c in checks}


def operation_checks(
    settings: Settings, temporal: Client, state: Any
) -> dict[str, Callable[[], Awaitable[None]]]:
    """What the first operation of each kind needs (a fresh chain is set up after it answers).
    ``state``: the app's state, with its EVM and Solana clients and the treasury's address."""

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
        if settings.payout_batch_enabled:
            named["PAYOUT_DISPERSE_ADDRESS"] = settings.payout_disperse_address
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


def _sees_details(request: Request, settings: Settings) -> bool:
    """Per-check details (latencies, errors) are for ``platform_admin`` only: an anonymous
    probe gets the status. A bad token is not an error here, just no details."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    try:
        return decode_token(token.strip(), settings).is_platform_admin
    except Unauthorized:
        return False


@router.get("/ready", responses={503: {"description": "a required dependency is down"}})
async def ready(
    request: Request, reads: ReadSessionsDep, temporal: TemporalDep, settings: SettingsDep
) -> JSONResponse:
    """``{"status": "ready"}`` or 503 ``not_ready``. With a ``platform_admin`` token, every
    dependency with status, latency and whether it is required."""
    readiness: Readiness = request.app.state.readiness
    ready_, checks = await readiness.check(reads, temporal, request.app.state)
    body: dict[str, Any] = {"status": "ready" if ready_ else "not_ready"}
    if _sees_details(request, settings):
        body["checks"] = checks
    return JSONResponse(body, status_code=200 if ready_ else 503)


@router.get("/startup", responses={503: {"description": "still starting or schema not at head"}})
async def startup(request: Request) -> JSONResponse:
    """Started when the app's lifespan ran and the database schema is at the migrations' head."""
    if not getattr(request.app.state, "started", False):
        return JSONResponse({"status": "starting"}, status_code=503)
    try:
        current = await current_revision(request.app.state.engine)
    except Exception as exc:
        log.warning("schema revision unreadable", error=str(exc)[:300])
        return JSONResponse({"status": "database_unreachable"}, status_code=503)
    head = head_revision()
    if current != head:
        return JSONResponse(
            {"status": "schema_behind", "current": current, "head": head, "fix": "make migrate"},
            status_code=503,
        )
    return JSONResponse({"status": "started", "schema": current})
