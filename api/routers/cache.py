"""``/api/v1/cache``: the provider caches of the process serving the request (admin only).

The API and the worker are separate processes with separate caches. These endpoints report and
flush the API process's registry: the SOL balance ``/metrics`` reads. The FX rate cache lives in
the worker (``fx.quote`` runs there); the worker's figures are not served over HTTP. Where the
worker runs inside the API's process (the test stack), the app is given the worker's registry and
both show here.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from api.deps import PlatformAdmin
from providers.cache import CacheRegistry
from runtime.logging import get_logger

router = APIRouter(prefix="/api/v1/cache", tags=["cache"])
log = get_logger("api.cache")

_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"description": "no valid token"},
    403: {"description": "not an admin"},
}


def _caches(request: Request) -> CacheRegistry:
    caches: CacheRegistry = request.app.state.caches
    return caches


@router.get("/stats", responses=_AUTH)
async def cache_stats(request: Request, _: PlatformAdmin) -> dict[str, Any]:
    """Per cache: entries held, hits, misses, hit ratio (null before the first look-up)."""
    return {"caches": {s.name: s.as_dict() for s in _caches(request).stats()}}


@router.delete("/flush", responses=_AUTH)
async def cache_flush(request: Request, principal: PlatformAdmin) -> dict[str, Any]:
    """Empties every cache of this process; hit and miss counters keep counting."""
    dropped = _caches(request).flush()
    log.info("caches flushed", by=principal.subject, tenant=principal.tenant, dropped=dropped)
    return {"flushed": dropped}
