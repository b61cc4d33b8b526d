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
from decimal import Decimal
from pathlib import Path

from fastapi import FastAPI
from starlette.types import Scope
from temporalio.client import Client

from api import public_keys
from api.errors import install_error_handlers
from api.limits import BodyLimits, BodyRefused, RouteCap
from api.metrics import ApiMetrics, MetricsListenerOnly, install_metrics
from api.metrics_queues import QueueStatsCache
from api.routers import (
    alerts,
    cache,
    codec,
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
    reconciliations,
    schedules,
    stripe_webhooks,
    tickets,
    unmatched_payments,
    verification_jobs,
    wallets,
    webhook_endpoints,
)
from api.upload_sweeper import sweep_forever
from providers.cache import CacheRegistry, TTLCache
from providers.evm import EvmClient
from providers.fx import CachedRateProvider, FixedRateProvider
from providers.solana.client import SolanaTicketClient
from runtime import tracing
from runtime.clients import ipfs_gateway
from runtime.interpreter import restore_recursion_limit
from runtime.logging import configure_logging, get_logger
from runtime.redact import register_settings
from runtime.settings import Settings, get_settings
from runtime.temporal import connect
from store.db import make_engine, make_read_session_factory, make_session_factory

# after every import: web3 -> py_ecc raised it to 100000 (a deep body then kills the process)
restore_recursion_limit()
log = get_logger("api.app")


def create_app(
    settings: Settings | None = None,
    *,
    temporal: Client | None = None,
    caches: CacheRegistry | None = None,
) -> FastAPI:
    """``caches``: the registry ``/api/v1/cache`` reports, this process's; a test that runs the
    worker in the same process passes the worker's, so the FX cache shows there too."""
    settings = settings or get_settings()
    register_settings(settings)
    tracing.install(settings, "api")

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
        app.state.readiness = health.Readiness(settings)
        app.state.solana = SolanaTicketClient(
            settings.solana_rpc_url,
            # the public key only: the API reads the fee payer's balance, the worker signs
            public_keys.solana_authority(settings),
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
        restore_recursion_limit()  # in case a lazy import raised it again
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
            await app.state.readiness.aclose()
            await engine.dispose()

    if temporal is None:
        configure_logging(settings.log_level, json=settings.log_json)
    app = FastAPI(
        title="Settle",
        version="0.1.0",
        description="Money-moving and on-chain operations as Temporal workflows.",
        lifespan=lifespan,
    )
    tracing.instrument_app(app)
    app.state.settings = settings
    app.state.metrics = ApiMetrics()
    app.state.caches = caches if caches is not None else CacheRegistry()
    # the quote given when a deposit is initiated; the worker takes later rates from the same source
    app.state.rates = CachedRateProvider(
        FixedRateProvider(settings.fx_kes_per_usdc),
        app.state.caches.register(TTLCache[Decimal]("fx_rate_quotes", settings.fx_cache_seconds)),
    )
    app.state.balance_cache = app.state.caches.register(
        TTLCache[float]("wallet_balances", settings.metrics_balance_cache_seconds, max_entries=4)
    )
    # addresses and public keys only: the API never signs
    app.state.treasury_address = public_keys.treasury_address(settings)
    public_keys.deposit_wallet(settings)  # a bad DEPOSIT_XPUB stops the start, not a request
    app.state.queue_stats = QueueStatsCache(
        settings.metrics_cache_seconds,
        timedelta(seconds=settings.metrics_duration_window_seconds),
    )
    install_error_handlers(app)
    install_metrics(app, app.state.metrics)
    codec.install_codec_cors(app, settings)
    routers = (
        health.router,
        metrics.router,
        # before deposits: its GET /{deposit_id} would take "unmatched-payments" for an id
        unmatched_payments.router,
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
        reconciliations.router,
        credentials.router,
        cache.router,
        queues.router,
        rate_limits.router,
        schedules.router,
        verification_jobs.router,
        codec.router,
    )
    for router in routers:
        app.include_router(router)
    # the internal metrics listener serves /metrics only
    app.add_middleware(MetricsListenerOnly, bind=settings.metrics_bind)
    install_body_limits(app, settings)
    return app


def body_caps(settings: Settings) -> list[RouteCap]:
    """Routes whose body cap is not API_MAX_BODY_BYTES: provider callbacks read at most a small
    cap before their signature or token is checked; uploads get the upload limit."""
    webhook = settings.api_webhook_max_body_bytes
    upload = settings.verification_max_upload_bytes + verification_jobs.MULTIPART_OVERHEAD
    return [
        RouteCap("/webhooks/stripe", webhook, "API_WEBHOOK_MAX_BODY_BYTES"),
        RouteCap("/api/v1/deposit/mpesa-callback/", webhook, "API_WEBHOOK_MAX_BODY_BYTES"),
        RouteCap(
            f"{verification_jobs.router.prefix}/verify",
            upload,
            "VERIFICATION_MAX_UPLOAD_BYTES",
            "file",
        ),
        RouteCap(
            f"{verification_jobs.router.prefix}/proof",
            upload,
            "VERIFICATION_MAX_UPLOAD_BYTES",
            "file",
        ),
    ]


def install_body_limits(app: FastAPI, settings: Settings) -> None:
    """Added last, so it is the outermost of the app's middleware: it sees every body first."""

    def refused(scope: Scope, error: BodyRefused) -> None:
        log.warning("request body refused", path=scope.get("path"), code=error.code)

    app.add_middleware(
        BodyLimits,
        max_bytes=settings.api_max_body_bytes,
        max_depth=settings.api_max_json_depth,
        routes=body_caps(settings),
        on_refused=refused,
    )
