"""``python worker.py [--queues workflows,mpesa,db]``: run Settle's workflows and activities.

One Temporal worker per task queue (workflows on one queue, activities on a queue per external
system), sharing one client and one set of provider clients built here and injected. SIGTERM or
Ctrl-C stops polling and lets in-flight activities finish (``WORKER_GRACEFUL_SHUTDOWN_SECONDS``).
The Temporal SDK's metrics are served in Prometheus format on ``WORKER_METRICS_BIND``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from solders.keypair import Keypair
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.common import MetricMeter
from temporalio.worker import Worker

from activities.chain import ChainReadActivities
from activities.cleanup import CleanupActivities
from activities.credentials import CredentialActivities
from activities.deposits import DepositActivities
from activities.events import EventActivities
from activities.evm import EvmWriteActivities, WriterConfig
from activities.fx import FxActivities
from activities.intents import IntentActivities
from activities.monitor import MonitorActivities
from activities.mpesa import MpesaActivities, PushAttempts
from activities.notify import NotifyActivities
from activities.payouts import PayoutActivities
from activities.reconcile import ReconcileActivities
from activities.solana import SolanaActivities
from activities.stripe import StripeActivities
from activities.tickets import TicketActivities
from activities.verification import VerificationActivities
from domain.breakers import Provider
from domain.queues import WORKFLOW_SUFFIX, ActivityQueue, all_queue_names
from providers.cache import CacheRegistry, TTLCache
from providers.daraja import DarajaClient
from providers.email import Mailer
from providers.evm import EvmClient, LocalSigner
from providers.fx import CachedRateProvider, FixedRateProvider, RateProvider
from providers.ipfs import IpfsGateway
from providers.solana.client import SolanaTicketClient
from providers.stripe import StripePayments
from providers.webhooks import WebhookSender
from runtime import tracing
from runtime.breakers import BreakerInterceptor, Breakers
from runtime.clients import ipfs_gateway
from runtime.interceptors import activity_interceptors
from runtime.interpreter import restore_recursion_limit
from runtime.logging import configure_logging, get_logger
from runtime.redact import register_settings
from runtime.schedules import ensure_schedules
from runtime.settings import Settings, get_settings
from runtime.temporal import connect_with_retry, metrics_runtime
from runtime.workflow_runner import workflow_runner
from store.db import make_engine, make_session_factory
from store.leases import SlotLimit
from workflows.anchor_batcher import AnchorBatcher
from workflows.chain_scanner import ChainScanner
from workflows.cleanup import Cleanup
from workflows.credentials import CredentialAnchor
from workflows.deposit_watch import DepositWatch, LateTransferCredit
from workflows.events import EventDelivery, WebhookRedelivery
from workflows.monitor import Monitor
from workflows.mpesa_deposit import MpesaDeposit
from workflows.payout_batcher import PayoutBatcher
from workflows.reconcile import Reconcile
from workflows.tickets import NftTransfer, Refund, TicketPurchase
from workflows.verification import Proof, Verification

# after every import: web3 -> py_ecc raised it to 100000
restore_recursion_limit()
log = get_logger("worker")

WORKFLOWS: list[type] = [
    MpesaDeposit,
    DepositWatch,
    LateTransferCredit,
    ChainScanner,
    TicketPurchase,
    Refund,
    NftTransfer,
    Monitor,
    Reconcile,
    Cleanup,
    CredentialAnchor,
    AnchorBatcher,
    PayoutBatcher,
    Verification,
    Proof,
    EventDelivery,
    WebhookRedelivery,
]


@dataclass
class Resources:
    """Clients shared by every activity of this process, built once."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    daraja: DarajaClient
    evm: EvmClient
    treasury: LocalSigner
    rates: RateProvider
    solana: SolanaTicketClient
    stripe: StripePayments
    mailer: Mailer
    webhooks: WebhookSender
    ipfs: IpfsGateway
    #: this process's provider caches (the FX rate)
    caches: CacheRegistry

    async def aclose(self) -> None:
        await self.daraja.aclose()
        await self.evm.aclose()
        await self.solana.aclose()
        await self.webhooks.aclose()
        await self.ipfs.aclose()
        await self.engine.dispose()


def build_resources(settings: Settings) -> Resources:
    register_settings(settings)
    engine = make_engine(settings.database_url, pool_size=settings.database_pool_size)
    caches = CacheRegistry()
    fx_cache: TTLCache[Decimal] = caches.register(TTLCache("fx_rate", settings.fx_cache_seconds))
    return Resources(
        caches=caches,
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine),
        daraja=DarajaClient(
            base_url=settings.daraja_base_url,
            consumer_key=settings.daraja_consumer_key.get_secret_value(),
            consumer_secret=settings.daraja_consumer_secret.get_secret_value(),
            shortcode=settings.daraja_shortcode,
            passkey=settings.daraja_passkey.get_secret_value(),
            transaction_type=settings.daraja_transaction_type,
            timeout_seconds=settings.daraja_timeout_seconds,
            token_refresh_margin_seconds=settings.daraja_token_refresh_margin_seconds,
            initiator_name=settings.daraja_initiator_name,
            security_credential=settings.daraja_security_credential.get_secret_value(),
        ),
        evm=EvmClient(
            settings.evm_rpc_url,
            chain_id=settings.evm_chain_id,
            timeout_seconds=settings.evm_rpc_timeout_seconds,
        ),
        treasury=LocalSigner(settings.treasury_private_key.get_secret_value()),
        rates=CachedRateProvider(FixedRateProvider(settings.fx_kes_per_usdc), fx_cache),
        solana=SolanaTicketClient(
            settings.solana_rpc_url,
            Keypair.from_base58_string(settings.solana_authority_keypair.get_secret_value()),
            commitment=settings.solana_commitment,
            timeout_seconds=settings.solana_timeout_seconds,
            confirm_timeout_seconds=settings.solana_confirm_timeout_seconds,
        ),
        stripe=StripePayments(
            settings.stripe_api_key.get_secret_value(),
            api_base=settings.stripe_api_base,
            timeout_seconds=settings.stripe_timeout_seconds,
        ),
        mailer=mailer(settings),
        webhooks=WebhookSender(
            timeout_seconds=settings.webhook_timeout_seconds,
            allowed_networks=settings.webhook_allowed_networks,
        ),
        ipfs=ipfs_gateway(settings),
    )


def mailer(settings: Settings) -> Mailer:
    return Mailer(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.email_from,
        security=settings.smtp_security,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        timeout_seconds=settings.smtp_timeout_seconds,
    )


def mpesa_callback_url(settings: Settings) -> str:
    token = settings.mpesa_callback_token.get_secret_value()
    return f"{settings.callback_base_url}/api/v1/deposit/mpesa-callback/{token}"


def mpesa_status_result_url(settings: Settings) -> str:
    """Daraja's ResultURL for Transaction Status, without the deposit id the activity appends."""
    token = settings.mpesa_callback_token.get_secret_value()
    return f"{settings.callback_base_url}/api/v1/deposit/mpesa-status-result/{token}"


def reconcile_status_result_url(settings: Settings) -> str:
    """The ResultURL of a reconciliation's Transaction Status queries, without the report id."""
    token = settings.mpesa_callback_token.get_secret_value()
    return f"{settings.callback_base_url}/api/v1/reconciliations/mpesa-status-result/{token}"


def activities_by_queue(
    resources: Resources, client: Client
) -> dict[ActivityQueue, list[Callable[..., Any]]]:
    settings = resources.settings
    monitor = MonitorActivities(
        client, resources.sessions, resources.evm, resources.treasury.address, resources.solana
    )
    mpesa = MpesaActivities(
        resources.daraja,
        mpesa_callback_url(settings),
        mpesa_status_result_url(settings),
        PushAttempts(
            resources.sessions,
            prompt_seconds=settings.mpesa_stk_prompt_expiry_seconds,
            match_seconds=settings.mpesa_push_match_seconds,
        ),
    )
    deposits = DepositActivities(resources.sessions)
    payouts = PayoutActivities(client, resources.evm, resources.treasury.address)
    evm_write = EvmWriteActivities(
        resources.evm,
        resources.treasury,
        resources.sessions,
        WriterConfig(
            usdc_address=settings.usdc_contract_address,
            stuck_after_seconds=settings.evm_stuck_after_seconds,
            fee_bump_percent=settings.evm_fee_bump_percent,
            priority_fee_gwei=settings.evm_priority_fee_gwei,
            max_fee_gwei=settings.evm_max_fee_gwei,
            poll_interval_seconds=settings.evm_poll_interval_seconds,
        ),
    )
    credentials = CredentialActivities(
        evm_write,
        resources.sessions,
        SlotLimit(
            name=f"{settings.task_queue_prefix}{ActivityQueue.CREDENTIALS.value}",
            limit=settings.credential_anchor_concurrency,
            ttl_seconds=settings.credential_anchor_lease_ttl_seconds,
        ),
    )
    fx = FxActivities(resources.rates)
    chain = ChainReadActivities(
        resources.evm,
        resources.sessions,
        settings.usdc_contract_address,
        settings.evm_getlogs_max_range,
        reorg_window=settings.chain_scanner_reorg_window,
    )
    intents = IntentActivities(resources.sessions)
    solana = SolanaActivities(resources.solana)
    stripe = StripeActivities(resources.stripe)
    notify = NotifyActivities(resources.mailer, resources.webhooks, resources.sessions)
    events = EventActivities(resources.webhooks, resources.sessions, client)
    tickets = TicketActivities(resources.sessions)
    reconcile = ReconcileActivities(
        resources.sessions,
        resources.stripe,
        resources.evm,
        resources.treasury.address,
        settings.usdc_contract_address,
        settings.evm_getlogs_max_range,
        resources.solana,
        resources.daraja,
        reconcile_status_result_url(settings),
    )
    verification = VerificationActivities(
        resources.ipfs, resources.evm, resources.sessions, Path(settings.verification_upload_dir)
    )
    cleanup = CleanupActivities(
        resources.sessions,
        Path(settings.cleanup_export_dir),
        Path(settings.verification_upload_dir),
    )
    return {
        ActivityQueue.MPESA: [
            mpesa.stk_push,
            mpesa.stk_query,
            mpesa.transaction_status,
            reconcile.transaction_status,
        ],
        ActivityQueue.DB: [
            deposits.record_stk_push,
            deposits.set_outcome,
            deposits.record_conversion,
            deposits.raise_alert,
            deposits.credit,
            payouts.join_batch,
            intents.credit_transfer,
            intents.mark_transfer,
            intents.close,
            tickets.payment_captured,
            tickets.update,
            tickets.reserve_refund,
            tickets.settle_refund,
            tickets.record_transfer,
            tickets.mint_outcome,
            monitor.measure,
            monitor.reconcile,
            reconcile.open,
            reconcile.record,
            reconcile.daraja,
            credentials.record,
            credentials.prepare_batch,
            credentials.record_batch,
            credentials.batch_members,
            verification.record,
            cleanup.purge_batch,
        ],
        ActivityQueue.VERIFICATION: [
            verification.hash_upload,
            verification.discard_upload,
            verification.recover_signer,
        ],
        ActivityQueue.IPFS: [verification.fetch_manifest],
        ActivityQueue.CREDENTIALS: [credentials.submit_anchor],
        ActivityQueue.STRIPE: [
            stripe.pay,
            stripe.retrieve,
            stripe.cancel,
            stripe.refund,
            stripe.retrieve_refund,
            reconcile.stripe,
        ],
        ActivityQueue.NOTIFY: [
            notify.email,
            notify.webhook,
            notify.record,
            events.emit_event,
            events.emit_events,
            events.deliver,
            events.give_up,
            events.redeliver,
        ],
        ActivityQueue.EVM_READ: [
            chain.scan,
            chain.check_transfers,
            chain.fallback_transfers,
            verification.read_registry,
            verification.proof_bundle,
            reconcile.chain,
        ],
        ActivityQueue.EVM_WRITE: [
            evm_write.submit,
            evm_write.transfer_usdc,
            evm_write.await_confirmations,
            evm_write.cancel,
            payouts.batch_transfers,
        ],
        ActivityQueue.FX: [fx.quote],
        ActivityQueue.SOLANA: [
            solana.mint_ticket,
            solana.transfer_ticket,
            solana.ticket_owner,
            solana.freeze_ticket,
            solana.burn_ticket,
            reconcile.solana,
        ],
    }


class CacheMetrics:
    """The worker's cache figures on its metrics endpoint (``WORKER_METRICS_BIND``):
    ``settle_cache_hits_total`` and ``settle_cache_misses_total`` (counters: what the caches
    counted since the previous publish is added), ``settle_cache_entries`` (a gauge), by ``cache``.
    The API's ``/api/v1/cache/stats`` reports the API process's caches, never these."""

    def __init__(self, meter: MetricMeter, caches: CacheRegistry) -> None:
        self._caches = caches
        self._hits = meter.create_counter("settle_cache_hits", "Look-ups answered from the cache")
        self._misses = meter.create_counter(
            "settle_cache_misses", "Look-ups that called the provider"
        )
        self._entries = meter.create_gauge("settle_cache_entries", "Fresh entries held")
        self._published: dict[str, tuple[int, int]] = {}

    def publish(self) -> None:
        for stats in self._caches.stats():
            labels = {"cache": stats.name}
            hits, misses = self._published.get(stats.name, (0, 0))
            # the caches' own counts only grow (a flush keeps them): add what is new
            self._hits.add(max(stats.hits - hits, 0), labels)
            self._misses.add(max(stats.misses - misses, 0), labels)
            self._published[stats.name] = (max(stats.hits, hits), max(stats.misses, misses))
            self._entries.set(stats.size, labels)

    async def run(self, every_seconds: float = 15.0) -> None:
        while True:
            self.publish()
            await asyncio.sleep(every_seconds)


def build_breakers(client: Client, resources: Resources) -> Breakers | None:
    """The fleet's circuit breakers as this worker counts and probes them (None when
    ``BREAKER_ENABLED`` is off). Each probe is a harmless call through this worker's clients."""
    if not resources.settings.breaker_enabled:
        return None
    return Breakers(
        client,
        resources.sessions,
        resources.settings,
        {
            Provider.DARAJA: resources.daraja.check_reachable,
            Provider.STRIPE: resources.stripe.check_reachable,
            Provider.EVM: resources.evm.block_number,
            Provider.SOLANA: resources.solana.balance_lamports,
            Provider.SMTP: resources.mailer.check_reachable,
        },
    )


def parse_queues(value: str | None) -> list[str]:
    if not value:
        return all_queue_names()
    names = [q.strip() for q in value.split(",") if q.strip()]
    unknown = sorted(set(names) - set(all_queue_names()))
    if unknown:
        raise SystemExit(f"unknown queue(s) {unknown}; choose from {all_queue_names()}")
    return names


def build_workers(
    client: Client,
    settings: Settings,
    resources: Resources,
    queues: Iterable[str],
    breakers: Breakers | None = None,
) -> list[Worker]:
    """``breakers``: count provider-call outcomes on the fleet's circuit breakers (its ``run``
    loop, which probes and reopens, is the caller's to start)."""
    prefix = settings.task_queue_prefix
    registry = activities_by_queue(resources, client)
    common: dict[str, Any] = {
        "graceful_shutdown_timeout": timedelta(seconds=settings.worker_graceful_shutdown_seconds),
        # activity errors leave the worker without the credentials a provider error may quote,
        # constraint violations are not retried, and steps that keep failing are reported; the
        # breaker's counting sits innermost, where it sees the provider's own error
        "interceptors": [
            *activity_interceptors(settings.step_alert_after_attempts),
            *([BreakerInterceptor(breakers)] if breakers is not None else []),
        ],
    }
    workers: list[Worker] = []
    for name in queues:
        if name == WORKFLOW_SUFFIX:
            workers.append(
                Worker(
                    client,
                    task_queue=f"{prefix}{name}",
                    workflows=WORKFLOWS,
                    workflow_runner=workflow_runner(),
                    max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks,
                    # bookkeeping runs here as local activities first (workflows/bookkeeping.py);
                    # this worker takes no activity task from the server
                    activities=registry.get(ActivityQueue.DB, []),
                    no_remote_activities=True,
                    **common,
                )
            )
            continue
        activities = registry.get(ActivityQueue(name), [])
        if not activities:
            log.info("no activities on this queue yet", queue=name)
            continue
        limits: dict[str, Any] = {
            "max_concurrent_activities": settings.worker_max_concurrent_activities
        }
        if name == ActivityQueue.VERIFICATION.value:
            limits = {"max_concurrent_activities": settings.verification_concurrency}
        if name == ActivityQueue.CREDENTIALS.value:
            limits = {
                "max_concurrent_activities": settings.credential_anchor_concurrency,
                "max_task_queue_activities_per_second": settings.credential_anchor_rate_per_second,
            }
        workers.append(
            Worker(
                client,
                task_queue=f"{prefix}{name}",
                activities=activities,
                **limits,
                # eager activities would bypass the server-side task-queue rate limits
                disable_eager_activity_execution=True,
                **common,
            )
        )
    return workers


async def run(settings: Settings, queues: Sequence[str]) -> None:
    tracing.install(settings, "worker")
    runtime = metrics_runtime(settings.worker_metrics_bind)
    client = await connect_with_retry(settings, runtime=runtime)
    resources = build_resources(settings)
    breakers = build_breakers(client, resources)
    workers = build_workers(client, settings, resources, queues, breakers)
    if WORKFLOW_SUFFIX in queues:
        await ensure_schedules(client, settings)
    cache_metrics = asyncio.create_task(CacheMetrics(runtime.metric_meter, resources.caches).run())
    breaker_loop = (
        asyncio.create_task(breakers.run(runtime.metric_meter)) if breakers is not None else None
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "worker started",
        queues=[w.task_queue for w in workers],
        metrics=f"http://{settings.worker_metrics_bind}/metrics",
        temporal=settings.temporal_address,
    )
    runs = [asyncio.create_task(w.run()) for w in workers]
    stopped = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stopped, *runs], return_when=asyncio.FIRST_COMPLETED)
    if stopped not in done:
        for task in done:
            task.result()  # a worker crashed: raise its error
    log.info("stopping: letting in-flight activities finish")
    await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
    await asyncio.gather(*runs, return_exceptions=True)
    cache_metrics.cancel()
    if breaker_loop is not None:
        breaker_loop.cancel()
    await resources.aclose()
    log.info("worker stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--queues",
        help=f"comma-separated queues to serve (default all: {','.join(all_queue_names())})",
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    asyncio.run(run(settings, parse_queues(args.queues)))
    sys.stdout.flush()
    sys.stderr.flush()
    # skip interpreter teardown: the SDK's bridge threads can abort it (sdk-python#300)
    os._exit(0)


if __name__ == "__main__":
    main()
