"""``/metrics`` in Prometheus text format: the API's own metrics and the business metrics, which
are read from the database at each scrape."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import MetricsDep, ReadSessionsDep
from api.metrics_tickets import snapshot
from domain.errors import SolanaError
from providers.solana.client import sol

router = APIRouter(tags=["metrics"])


async def _solana_balance(request: Request) -> float | None:
    try:
        return sol(await asyncio.wait_for(request.app.state.solana.balance_lamports(), 3))
    except (SolanaError, TimeoutError):
        return None


@router.get("/metrics", response_class=Response)
async def metrics(request: Request, api_metrics: MetricsDep, reads: ReadSessionsDep) -> Response:
    api_metrics.tickets.last = await snapshot(reads, await _solana_balance(request))
    return Response(generate_latest(api_metrics.registry), media_type=CONTENT_TYPE_LATEST)
