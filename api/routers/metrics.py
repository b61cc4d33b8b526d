"""``/metrics`` in Prometheus text format: the API's own counters (HTTP requests, M-Pesa deposits
initiated and callbacks received, counted as they happen), the process's figures, the queue gauges
(from Temporal visibility, ``api/metrics_queues.py``) and the wallet balances;
``/metrics/json``, ``/metrics/queue-stats`` and ``/metrics/system`` give figures as JSON. The
operation and business counters are the worker's (its ``WORKER_METRICS_BIND`` endpoint).

Who may read what: ``/metrics`` needs a bearer token with the ``platform_admin`` role, except on
the internal listener ``METRICS_BIND`` (when set), where Prometheus scrapes it without one.
``/metrics/json`` and ``/metrics/system`` are service-wide, the same figures ``/metrics`` serves:
``platform_admin`` only. ``/metrics/queue-stats`` counts the caller's tenant only for a tenant's
``admin``, like every other list of jobs (every tenant for ``platform_admin``).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError

from api.deps import (
    MetricsDep,
    OperatorUser,
    PlatformAdmin,
    ReadSessionsDep,
    TemporalDep,
    bearer,
    current_user,
)
from api.jobs_lookup import raise_if_unreachable, tenant_query
from api.metrics import ApiMetrics, on_metrics_listener
from api.metrics_breakers import gauges as breaker_gauges
from api.metrics_queues import QueueSnapshot, QueueStatsCache, histogram_buckets
from api.metrics_tickets import TicketSnapshot, snapshot
from domain.errors import EvmError, Forbidden, SolanaError
from domain.money import EXPONENT, Currency
from providers.cache import TTLCache
from providers.evm.erc20 import Erc20
from providers.solana.client import sol
from runtime.logging import get_logger

router = APIRouter(tags=["metrics"])
log = get_logger("api.metrics")

_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"description": "no valid token"},
    403: {"description": "not an admin"},
}


async def _solana_balance(request: Request) -> float | None:
    cache: TTLCache[float] = request.app.state.balance_cache

    async def read() -> float:
        return sol(await asyncio.wait_for(request.app.state.solana.balance_lamports(), 3))

    try:
        return await cache.get_or_load("solana_authority_sol", read)
    except (SolanaError, TimeoutError):
        return None


async def _treasury_usdc(request: Request) -> float | None:
    cache: TTLCache[float] = request.app.state.balance_cache
    settings = request.app.state.settings
    usdc = Erc20(request.app.state.evm, settings.usdc_contract_address)

    async def read() -> float:
        base_units = await asyncio.wait_for(usdc.balance_of(request.app.state.treasury_address), 3)
        return base_units / 10 ** EXPONENT[Currency.USDC]

    try:
        return await cache.get_or_load("evm_treasury_usdc", read)
    except (EvmError, TimeoutError):
        return None


async def _business(request: Request, reads: async_sessionmaker[AsyncSession]) -> TicketSnapshot:
    solana, treasury = await asyncio.gather(_solana_balance(request), _treasury_usdc(request))
    return await snapshot(reads, solana, treasury)


async def _balances(request: Request) -> TicketSnapshot:
    """What ``/metrics`` serves of the snapshot: the balances (the row totals are JSON only)."""
    solana, treasury = await asyncio.gather(_solana_balance(request), _treasury_usdc(request))
    return TicketSnapshot(solana_balance_sol=solana, treasury_usdc=treasury)


def _queue_cache(request: Request) -> QueueStatsCache:
    cache: QueueStatsCache = request.app.state.queue_stats
    return cache


async def _queues(request: Request, client: Client, scope: str = "") -> QueueSnapshot:
    try:
        return await _queue_cache(request).get(client, scope)
    except (RPCError, RuntimeError) as exc:
        raise_if_unreachable(exc)
        raise


def scraper(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """Open on the METRICS_BIND listener; elsewhere a ``platform_admin`` token."""
    settings = request.app.state.settings
    if on_metrics_listener(request.scope, settings.metrics_bind):
        return
    principal = current_user(request, credentials)
    if not principal.is_platform_admin:
        raise Forbidden("platform_admin role required (or scrape METRICS_BIND)")


@router.get(
    "/metrics",
    response_class=Response,
    responses={401: {"description": "no valid token"}, 403: {"description": "not platform_admin"}},
    dependencies=[Depends(scraper)],
)
async def metrics(
    request: Request, api_metrics: MetricsDep, reads: ReadSessionsDep, client: TemporalDep
) -> Response:
    api_metrics.tickets.last = await _balances(request)
    api_metrics.breakers.last = await breaker_gauges(
        reads, request.app.state.settings.task_queue_prefix
    )
    try:
        api_metrics.queues.last = await _queue_cache(request).get(client)
    except (RPCError, RuntimeError) as exc:
        # the other metrics still matter when Temporal is down: leave the queue metrics out
        log.warning("queue metrics unavailable", error=str(exc))
        api_metrics.queues.last = None
    return Response(generate_latest(api_metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _queues_json(taken: QueueSnapshot) -> dict[str, Any]:
    return {
        kind: {
            "processed_total": s.processed,
            "failed_total": s.failed,
            "active_jobs": s.active,
            "queue_size": s.open,
            "needs_attention": s.needs_attention,
            "processing_duration_seconds": {
                "count": len(s.durations),
                "sum": sum(s.durations),
                "buckets": dict(histogram_buckets(s.durations)),
            },
        }
        for kind, s in taken.kinds.items()
    }


def _tickets_json(t: TicketSnapshot) -> dict[str, Any]:
    return {
        "payments_processed_total": {c: n for c, (n, _) in t.payments.items()},
        "payment_amount_total_cents": {c: v for c, (_, v) in t.payments.items()},
        "refunds_processed_total": {c: n for c, (n, _) in t.refunds.items()},
        "refund_amount_total_cents": {c: v for c, (_, v) in t.refunds.items()},
        "nfts_minted_total": t.minted,
        "nft_transfers_total": t.transfers,
        "emails_sent_total": t.notifications.get(("email", "sent"), 0),
        "emails_failed_total": t.notifications.get(("email", "failed"), 0),
        "webhooks_sent_total": t.notifications.get(("webhook", "sent"), 0),
        "webhooks_failed_total": t.notifications.get(("webhook", "failed"), 0),
        "solana_wallet_balance_sol": t.solana_balance_sol,
        "evm_treasury_usdc_balance": t.treasury_usdc,
    }


def _initiated(api_metrics: ApiMetrics) -> float:
    """The counter's value, read from it alone (collecting the whole registry would also take a
    CPU reading and shorten the next one's interval)."""
    for family in api_metrics.deposits_initiated.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                return sample.value
    return 0.0


@router.get("/metrics/json", responses=_AUTH)
async def metrics_json(
    request: Request,
    _: PlatformAdmin,
    api_metrics: MetricsDep,
    reads: ReadSessionsDep,
    client: TemporalDep,
) -> dict[str, Any]:
    """The figures of ``/metrics`` (service-wide) as JSON; HTTP request counters are left out."""
    tickets = await _business(request, reads)
    taken = await _queues(request, client)
    return {
        "queues": _queues_json(taken),
        "queues_taken_at": taken.taken_at,
        "service": api_metrics.system.read().as_dict(),
        "tickets": _tickets_json(tickets),
        "mpesa_deposits_initiated_total": _initiated(api_metrics),
    }


@router.get("/metrics/queue-stats", responses=_AUTH)
async def queue_stats(
    request: Request, principal: OperatorUser, client: TemporalDep
) -> dict[str, dict[str, int]]:
    """Per operation kind, the caller's tenant's executions: running, completed, failed,
    needs_attention, cancelled."""
    taken = await _queues(request, client, tenant_query(principal))
    return {kind: s.queue_stats() for kind, s in taken.kinds.items()}


@router.get("/metrics/system", responses=_AUTH)
async def system(_: PlatformAdmin, api_metrics: MetricsDep) -> dict[str, Any]:
    """This API process: uptime, resident memory, CPU use, Python version, pid."""
    return api_metrics.system.read().as_dict()
