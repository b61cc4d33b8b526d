"""The app factory. ``uvicorn api.app:create_app --factory``.

The lifespan builds the database engine and the Temporal client (lazily connected, so the API
starts, and says it is not ready, while Temporal is still down).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI
from solders.keypair import Keypair
from temporalio.client import Client

from api.errors import install_error_handlers
from api.metrics import ApiMetrics, install_metrics
from api.metrics_queues import QueueStatsCache
from api.routers import (
    alerts,
    cache,
    credentials,
    dead_letter,
    deposits,
    events,
    health,
    intents,
    job_starts,
    jobs,
    metrics,
    portfolio,
    queues,
    rate_limits,
    stripe_webhooks,
    tickets,
    verification_jobs,
    wallets,
    webhook_endpoints,
)
from api.upload_sweeper import sweep_forever
from providers.cache import CacheRegistry, TTLCache
from providers.evm import EvmClient, LocalSigner
from providers.solana.client import SolanaTicketClient
from runtime.clients import ipfs_gateway
from runtime.logging import configure_logging
from runtime.settings import Settings, get_settings
from runtime.temporal import connect
from store.db import make_engine, make_read_session_factory, make_session_factory


def create_app(
    settings: Settings | None = None,
    *,
    temporal: Client | None = None,
    caches: CacheRegistry | None = None,
) -> FastAPI:
    """``caches``: the registry ``/api/v1/cache`` reports, this process's; a test that runs the
    worker in the same process passes the worker's, so the FX cache shows there too."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(
            settings.database_url,
            echo=settings.database_echo,
            pool_size=settings.database_pool_size,
        )
        app.state.engine = engine
        app.state.sessions = make_session_factory(engine)
        app.state.reads = make_read_session_factory(engine)
        app.state.temporal = temporal or await connect(settings, lazy=True)
        app.state.evm = EvmClient(
            settings.evm_rpc_url,
            chain_id=settings.evm_chain_id,
            timeout_seconds=settings.evm_rpc_timeout_seconds,
        )
        app.state.ipfs = ipfs_gateway(settings)
        app.state.scanner_ensured_at = None
        app.state.solana = SolanaTicketClient(
            settings.solana_rpc_url,
            Keypair.from_base58_string(settings.solana_authority_keypair.get_secret_value()),
            commitment=settings.solana_commitment,
            timeout_seconds=3,
        )
        sweeper = asyncio.create_task(
            sweep_forever(
                Path(settings.verification_upload_dir),
                app.state.sessions,
                settings.verification_orphan_upload_seconds,
            )
        )
        app.state.started = True
        try:
            yield
        finally:
            app.state.started = False
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await app.state.evm.aclose()
            await app.state.ipfs.aclose()
            await app.state.solana.aclose()
            await engine.dispose()

    if temporal is None:
        configure_logging(settings.log_level, json=settings.log_json)
    app = FastAPI(
        title="Settle",
        version="0.1.0",
        description="Money-moving and on-chain operations as Temporal workflows.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = ApiMetrics()
    app.state.caches = caches if caches is not None else CacheRegistry()
    app.state.balance_cache = app.state.caches.register(
        TTLCache[float]("wallet_balances", settings.metrics_balance_cache_seconds, max_entries=4)
    )
    # only the address is kept: the API never signs
    app.state.treasury_address = LocalSigner(
        settings.treasury_private_key.get_secret_value()
    ).address
    app.state.queue_stats = QueueStatsCache(
        settings.metrics_cache_seconds,
        timedelta(seconds=settings.metrics_duration_window_seconds),
    )
    install_error_handlers(app)
    install_metrics(app, app.state.metrics)
    routers = (
        health.router,
        metrics.router,
        deposits.router,
        intents.router,
        portfolio.router,
        wallets.router,
        tickets.router,
        stripe_webhooks.router,
        webhook_endpoints.router,
        events.router,
        job_starts.router,
        jobs.router,
        dead_letter.router,
        alerts.router,
        credentials.router,
        cache.router,
        queues.router,
        rate_limits.router,
        verification_jobs.router,
    )
    for router in routers:
        app.include_router(router)
    return app
