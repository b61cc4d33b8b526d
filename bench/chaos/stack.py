"""The chaos run's stack: the processes of ``make run`` (2 workers, 2 APIs), with every provider
behind a :class:`~bench.chaos.proxy.FaultProxy`, and the sandboxes inside this process so that
what they recorded (STK pushes, PaymentIntents, mints, emails) can be read at the end.

Out of process, so they can be killed: the Temporal dev server (restarted on the same SQLite
file), the workers and APIs, the chain (anvil with the contracts, as ``make run``). PostgreSQL is
embedded, its data in the run's folder like everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from fastapi import FastAPI, Request, Response
from solders.keypair import Keypair

from bench.chaos.proxy import FaultProxy
from bench.stack import wait_chain, wait_http
from domain.search import dev_server_flags
from runtime.devserver import temporal_cli
from runtime.settings import EMBEDDED_DATABASE, Settings
from sandbox.daraja import create_daraja_app
from sandbox.ipfs import create_ipfs_app
from sandbox.local_stack import free_port, isolated_env
from sandbox.serve import RunningServer, serve
from sandbox.smtp import MailCatcher, start_smtp
from sandbox.solana_rpc import SolanaSandbox, create_solana_app, fund
from sandbox.stripe import create_stripe_app
from store.embedded import EmbeddedPostgres

ROOT = Path(__file__).resolve().parents[2]
#: the providers an outage takes down in turn (SMTP's is "SMTP refusing")
PROVIDERS = ("daraja", "stripe", "anvil", "solana", "smtp")


@dataclass
class Process:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    handle: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.handle = await asyncio.create_subprocess_exec(
                *self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=log
            )

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no flush; what a crashed machine does."""
        if self.handle is not None and self.handle.returncode is None:
            self.handle.send_signal(signal.SIGKILL)
            await self.handle.wait()

    async def stop(self) -> None:
        if self.handle is None or self.handle.returncode is not None:
            return
        self.handle.terminate()
        try:
            await asyncio.wait_for(self.handle.wait(), 15)
        except TimeoutError:
            await self.kill()


@dataclass
class Webhooks:
    """The venue's webhook receiver: every delivery's ``webhook-id`` (a retry repeats it)."""

    deliveries: list[str] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            await request.body()
            self.deliveries.append(request.headers.get("webhook-id", ""))
            return Response(status_code=204)

        return app


@dataclass
class ChaosStack:
    workdir: Path
    env: dict[str, str]
    database: EmbeddedPostgres
    api_urls: list[str]
    anvil_url: str
    proxies: dict[str, FaultProxy]
    daraja: FastAPI
    stripe: FastAPI
    solana: SolanaSandbox
    mail: MailCatcher
    webhooks: Webhooks
    webhook_url: str
    devserver: Process
    workers: list[Process]
    apis: list[Process]
    others: list[Process] = field(default_factory=list)
    servers: list[RunningServer] = field(default_factory=list)

    @property
    def database_url(self) -> str:
        return self.env["DATABASE_URL"]

    @property
    def settings(self) -> Settings:
        return Settings(_env_file=None, database_url=self.database_url)

    async def kill_worker(self, index: int, down_seconds: float = 1.0) -> None:
        worker = self.workers[index % len(self.workers)]
        await worker.kill()
        await asyncio.sleep(down_seconds)
        await worker.start()

    async def restart_server(self, down_seconds: float = 3.0) -> None:
        """SIGKILL the dev server and start it again on the same SQLite file."""
        await self.devserver.kill()
        await asyncio.sleep(down_seconds)
        await self.devserver.start()

    async def cut_database(self) -> int:
        """Terminate every other connection to Settle's database; how many were cut."""
        connection = await asyncpg.connect(
            self.database.url(EMBEDDED_DATABASE).replace("+asyncpg", "")
        )
        try:
            rows = await connection.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                EMBEDDED_DATABASE,
            )
            return sum(1 for row in rows if row[0])
        finally:
            await connection.close()


def _dev_server(env: dict[str, str], workdir: Path) -> Process:
    port = env["TEMPORAL_ADDRESS"].rpartition(":")[2]
    argv = [
        temporal_cli(),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        port,
        "--ui-port",
        env["DEV_SERVER_UI_PORT"],
        "--db-filename",
        str(workdir / "temporal.db"),
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
        "--log-level",
        "warn",
        *dev_server_flags(),
    ]
    return Process("temporal", argv, env, workdir / "temporal.log")


#: timings shortened so that a run of minutes sees every path end (defaults are for people)
FAST_TIMINGS = {
    "SANDBOX_DARAJA_CALLBACK_DELAY_SECONDS": "0.5",
    "DARAJA_TIMEOUT_SECONDS": "5",
    "MPESA_CALLBACK_WAIT_SECONDS": "15",
    "MPESA_QUERY_INTERVAL_SECONDS": "3",
    "MPESA_PUSH_RESOLVE_SECONDS": "20",
    "MPESA_TRANSACTION_STATUS_WAIT_SECONDS": "15",
    "STRIPE_TIMEOUT_SECONDS": "5",
    "SMTP_TIMEOUT_SECONDS": "5",
    "SOLANA_TIMEOUT_SECONDS": "5",
    "EVM_RPC_TIMEOUT_SECONDS": "5",
    "WEBHOOK_TIMEOUT_SECONDS": "5",
    "CREDENTIAL_ANCHOR_BATCH_WAIT_SECONDS": "3",
    "DEPOSIT_WATCH_FALLBACK_SECONDS": "20",
}


async def _proxied(name: str, port: int, protocol: str = "http") -> FaultProxy:
    proxy = FaultProxy(name, "127.0.0.1", port, protocol=protocol)
    await proxy.start()
    return proxy


@asynccontextmanager
async def chaos_stack(
    *, block_time: float = 1.0, extra_env: dict[str, str] | None = None
) -> AsyncIterator[ChaosStack]:
    """Everything up and ``/health/ready`` on both APIs; stopped (data kept) at the end."""
    workdir = Path(tempfile.mkdtemp(prefix="settle-chaos-"))
    env = isolated_env(workdir)
    settings = Settings(_env_file=None)
    servers: list[RunningServer] = []
    processes: list[Process] = []
    database = EmbeddedPostgres(workdir / "postgres", int(env["EMBEDDED_POSTGRES_PORT"]))
    proxies: dict[str, FaultProxy] = {}
    closers: list[Callable[[], None]] = []
    print(f"chaos stack: logs and data in {workdir}", flush=True)
    try:
        await asyncio.to_thread(database.start)
        await asyncio.to_thread(database.create_database, EMBEDDED_DATABASE)
        # the sandboxes, here: what they record is read at the end
        webhooks = Webhooks()
        daraja = create_daraja_app(
            consumer_key=settings.daraja_consumer_key.get_secret_value(),
            consumer_secret=settings.daraja_consumer_secret.get_secret_value(),
            shortcode=settings.daraja_shortcode,
            passkey=settings.daraja_passkey.get_secret_value(),
            callback_delay_seconds=float(FAST_TIMINGS["SANDBOX_DARAJA_CALLBACK_DELAY_SECONDS"]),
        )
        solana_state = SolanaSandbox()
        solana = create_solana_app(solana_state)
        authority = Keypair.from_base58_string(settings.solana_authority_keypair.get_secret_value())
        fund(solana, authority.pubkey(), settings.sandbox_solana_airdrop_sol)
        stripe = create_stripe_app(
            api_key=settings.stripe_api_key.get_secret_value(),
            webhook_secret=settings.stripe_webhook_secret.get_secret_value(),
            webhook_url=f"{env['API_PUBLIC_URL']}/webhooks/stripe",
        )
        mail = MailCatcher()
        smtp_server = await start_smtp(mail, "127.0.0.1", 0)
        closers.append(smtp_server.close)
        smtp_port = int(smtp_server.sockets[0].getsockname()[1])
        for app in (daraja, stripe, solana, webhooks.app()):
            servers.append(await serve(app))
        servers.append(await serve(create_ipfs_app(workdir / "ipfs")))
        anvil_port = int(env["SANDBOX_ANVIL_PORT"])
        proxies = {
            "daraja": await _proxied("daraja", servers[0].port),
            "stripe": await _proxied("stripe", servers[1].port),
            "solana": await _proxied("solana", servers[2].port),
            "anvil": await _proxied("anvil", anvil_port),
            "smtp": await _proxied("smtp", smtp_port, "smtp"),
        }
        env.update(
            {
                "DATABASE_URL": database.url(EMBEDDED_DATABASE),
                "LOG_LEVEL": "WARNING",
                "SANDBOX_ANVIL_BLOCK_TIME": str(block_time),
                "EVM_BLOCK_TIME_SECONDS": str(block_time),
                "DARAJA_BASE_URL": proxies["daraja"].url,
                "STRIPE_API_BASE": proxies["stripe"].url,
                "SOLANA_RPC_URL": proxies["solana"].url,
                "EVM_RPC_URL": proxies["anvil"].url,
                "SMTP_PORT": str(proxies["smtp"].port),
                "IPFS_GATEWAY_URL": servers[4].url,
                "SANDBOX_IPFS_DIR": str(workdir / "ipfs"),
                # the venue's receiver is on loopback: allow-listed, as a local venue would be
                "WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
                # one load generator starts hundreds of operations a minute on purpose
                **{
                    name.upper(): "0" for name in Settings.model_fields if name.startswith("abuse_")
                },
                **FAST_TIMINGS,
                **(extra_env or {}),
            }
        )
        devserver = _dev_server(env, workdir)
        processes.append(devserver)
        await devserver.start()
        migrate = Process(
            "migrate", [sys.executable, "-m", "store.migrate"], env, workdir / "migrate.log"
        )
        await migrate.start()
        assert migrate.handle is not None
        if await migrate.handle.wait() != 0:
            raise RuntimeError(f"migrations failed: see {migrate.log}")
        chain = Process(
            "chain", [sys.executable, "-m", "sandbox.chain"], env, workdir / "chain.log"
        )
        processes.append(chain)
        await chain.start()
        assert chain.handle is not None
        await wait_chain(f"http://127.0.0.1:{anvil_port}", chain.handle)
        workers = []
        for i in range(2):
            worker_env = {**env, "WORKER_METRICS_BIND": f"127.0.0.1:{free_port()}"}
            workers.append(
                Process(
                    f"worker{i}",
                    [sys.executable, "worker.py"],
                    worker_env,
                    workdir / f"worker{i}.log",
                )
            )
        apis = []
        api_urls = [env["API_PUBLIC_URL"]]
        for i in range(2):
            api_env = dict(env)
            if i:
                port = free_port()
                api_env["API_PORT"] = str(port)
                api_urls.append(f"http://127.0.0.1:{port}")
            apis.append(
                Process(f"api{i}", [sys.executable, "-m", "api"], api_env, workdir / f"api{i}.log")
            )
        for process in (*workers, *apis):
            processes.append(process)
            await process.start()
        for url in api_urls:
            await wait_http(f"{url}/health/ready", timeout=180)
        yield ChaosStack(
            workdir=workdir,
            env=env,
            database=database,
            api_urls=api_urls,
            anvil_url=f"http://127.0.0.1:{anvil_port}",
            proxies=proxies,
            daraja=daraja,
            stripe=stripe,
            solana=solana_state,
            mail=mail,
            webhooks=webhooks,
            webhook_url=f"{servers[3].url}/hook",
            devserver=devserver,
            workers=workers,
            apis=apis,
            others=[chain],
            servers=servers,
        )
    finally:
        for process in reversed(processes):
            with contextlib.suppress(Exception):
                await process.stop()
        for proxy in proxies.values():
            await proxy.stop()
        for server in servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.stop(), 10)
        for close in closers:
            close()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(database.stop)


def environment_summary() -> str:
    return f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"
