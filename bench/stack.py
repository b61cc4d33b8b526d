"""Start the dev stack as separate processes (as ``make run`` does) for benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import httpx

from domain.search import dev_server_flags
from providers.evm import EvmClient
from runtime.devserver import temporal_cli
from runtime.settings import Settings
from runtime.settings.evm import SANDBOX_USDC_ADDRESS
from runtime.temporal import connect
from sandbox.chain import has_code
from sandbox.rpc_proxy import RpcProxy
from sandbox.serve import bind_socket, serve

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class BenchStack:
    env: dict[str, str]
    api_url: str
    daraja_url: str
    temporal_address: str
    processes: list[asyncio.subprocess.Process] = field(default_factory=list)
    #: anvil itself (the worker and API talk to it through ``proxy``, which counts calls)
    anvil_url: str = ""
    proxy: RpcProxy | None = None
    worker: asyncio.subprocess.Process | None = None
    #: each process's output goes to <log_dir>/<name>.log
    log_dir: Path | None = None

    def _log_file(self, name: str) -> BinaryIO | None:
        if self.log_dir is None:
            return None
        return (self.log_dir / f"{name}.log").open("ab")

    async def spawn(self, *argv: str, name: str | None = None) -> asyncio.subprocess.Process:
        log = self._log_file(name or Path(argv[0]).name)
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=ROOT,
            env=self.env,
            stdout=log or asyncio.subprocess.DEVNULL,
            stderr=log or asyncio.subprocess.DEVNULL,
        )
        self.processes.append(process)
        return process


async def wait_chain(url: str, process: asyncio.subprocess.Process, timeout: float = 60) -> None:
    """Until MockUSDC is deployed (the chain process deploys it after anvil answers)."""
    client = EvmClient(url, chain_id=31337, timeout_seconds=2)
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while asyncio.get_running_loop().time() < deadline:
            if process.returncode is not None:
                raise RuntimeError("the chain process exited")
            with contextlib.suppress(Exception):  # anvil is still starting
                if await has_code(client, SANDBOX_USDC_ADDRESS):
                    return
            await asyncio.sleep(0.2)
        raise TimeoutError("the sandbox chain did not come up")
    finally:
        await client.aclose()


async def wait_http(url: str, timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with httpx.AsyncClient(timeout=2) as http:
        while asyncio.get_running_loop().time() < deadline:
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout}s")


@asynccontextmanager
async def bench_stack(
    database_url: str | None,
    callback_delay: float,
    *,
    block_time: float = 2.0,
    extra_env: dict[str, str] | None = None,
) -> AsyncIterator[BenchStack]:
    workdir = Path(tempfile.mkdtemp(prefix="settle-bench-"))
    temporal_port, ui_port, api_port, daraja_port, metrics_port, anvil_port = (
        free_port() for _ in range(6)
    )
    stripe_port, smtp_port, solana_port, ipfs_port = (free_port() for _ in range(4))
    proxy_socket = bind_socket("127.0.0.1", 0)
    proxy = RpcProxy(f"http://127.0.0.1:{anvil_port}")
    proxy_server = await serve(proxy.app, sock=proxy_socket)
    env = {
        **os.environ,
        "SETTLE_ENV": "local",
        "DATABASE_URL": database_url or f"sqlite+aiosqlite:///{workdir}/settle.db",
        "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
        "API_PORT": str(api_port),
        "API_PUBLIC_URL": f"http://127.0.0.1:{api_port}",
        "DARAJA_BASE_URL": f"http://127.0.0.1:{daraja_port}",
        "SANDBOX_DARAJA_PORT": str(daraja_port),
        "SANDBOX_DARAJA_CALLBACK_DELAY_SECONDS": str(callback_delay),
        "WORKER_METRICS_BIND": f"127.0.0.1:{metrics_port}",
        "LOG_LEVEL": "WARNING",
        "SANDBOX_ANVIL_PORT": str(anvil_port),
        "SANDBOX_ANVIL_BLOCK_TIME": str(block_time),
        "SANDBOX_ANVIL_STATE_FILE": str(workdir / "anvil-state.json"),
        "EVM_BLOCK_TIME_SECONDS": str(block_time),
        "EVM_RPC_URL": proxy_server.url,
        # the ticket sandboxes on ports of their own, so a running `make run` is no obstacle
        "SANDBOX_STRIPE_PORT": str(stripe_port),
        "STRIPE_API_BASE": f"http://127.0.0.1:{stripe_port}",
        "SANDBOX_SMTP_PORT": str(smtp_port),
        "SMTP_PORT": str(smtp_port),
        "SANDBOX_MAIL_DIR": str(workdir / "mail"),
        "SANDBOX_SOLANA_PORT": str(solana_port),
        "SOLANA_RPC_URL": f"http://127.0.0.1:{solana_port}",
        "SANDBOX_IPFS_PORT": str(ipfs_port),
        "SANDBOX_IPFS_DIR": str(workdir / "ipfs"),
        "IPFS_GATEWAY_URL": f"http://127.0.0.1:{ipfs_port}",
        "VERIFICATION_UPLOAD_DIR": str(workdir / "uploads"),
        **(extra_env or {}),
    }
    stack = BenchStack(
        env,
        f"http://127.0.0.1:{api_port}",
        f"http://127.0.0.1:{daraja_port}",
        env["TEMPORAL_ADDRESS"],
        anvil_url=f"http://127.0.0.1:{anvil_port}",
        proxy=proxy,
        log_dir=workdir,
    )
    print(f"bench stack: logs and data in {workdir}", flush=True)
    try:
        await stack.spawn(
            temporal_cli(),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(temporal_port),
            "--ui-port",
            str(ui_port),
            "--db-filename",
            str(workdir / "temporal.db"),
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
            "--log-level",
            "warn",
            *dev_server_flags(),
        )
        migrate = await stack.spawn(sys.executable, "-m", "store.migrate", name="migrate")
        await migrate.wait()
        await stack.spawn(sys.executable, "-m", "sandbox", name="sandbox")
        chain = await stack.spawn(sys.executable, "-m", "sandbox.chain", name="chain")
        await wait_chain(stack.anvil_url, chain)
        stack.worker = await stack.spawn(sys.executable, "worker.py", name="worker")
        await stack.spawn(sys.executable, "-m", "api", name="api")
        await wait_http(f"{stack.api_url}/health/ready")
        yield stack
    finally:
        await proxy_server.stop()
        for process in reversed(stack.processes):
            if process.returncode is None:
                process.terminate()
        for process in stack.processes:
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()


async def activity_count(stack: BenchStack, workflow_id: str) -> int:
    """ActivityTaskScheduled events in one completed purchase's history."""
    client = await connect(Settings(_env_file=None, temporal_address=stack.temporal_address))
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return sum(1 for e in history.events if e.HasField("activity_task_scheduled_event_attributes"))
