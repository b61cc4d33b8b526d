"""Liveness, readiness (database and Temporal, each with latency) and startup probes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import ReadSessionsDep, SettingsDep, TemporalDep
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


@router.get("/ready", responses={503: {"description": "a required dependency is down"}})
async def ready(
    reads: ReadSessionsDep, temporal: TemporalDep, settings: SettingsDep
) -> JSONResponse:
    """Ready when the database and Temporal answer."""

    async def database() -> None:
        async with reads() as session:
            await session.execute(text("SELECT 1"))

    async def temporal_server() -> None:
        healthy = await temporal.service_client.check_health(
            timeout=timedelta(seconds=CHECK_TIMEOUT_SECONDS)
        )
        if not healthy:
            raise RuntimeError("Temporal reports not serving")

    checks = await asyncio.gather(
        timed_check("database", database), timed_check("temporal", temporal_server)
    )
    ready_ = all(c["status"] == "up" for c in checks)
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
