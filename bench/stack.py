"""Start the dev stack as separate processes (as ``make run`` does) for benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import httpx
from temporalio.client import Client, WorkflowExecutionStatus

from api.jobs_lookup import JobRef, failure_message, status_error
from bench.outcomes import Tally
from domain.search import dev_server_flags
from operations.jobs_timeline import LOCAL_ACTIVITY_MARKER
from providers.evm import EvmClient
from runtime.devserver import dynamic_config_flags, temporal_cli
from runtime.settings import EMBEDDED_DATABASE, Settings
from runtime.settings.evm import SANDBOX_USDC_ADDRESS
from runtime.temporal import connect
from sandbox.chain import has_code
from sandbox.local_stack import free_port as free_port
from sandbox.local_stack import isolated_env
from sandbox.rpc_proxy import RpcProxy
from sandbox.serve import bind_socket, serve
from store.embedded import EmbeddedPostgres

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "bench" / "profiles"


#: the Procfile's ``nice -n`` for the worker
WORKER_NICENESS = 10


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
    api: asyncio.subprocess.Process | None = None
    #: each process's output goes to <log_dir>/<name>.log
    log_dir: Path | None = None
    _temporal: Client | None = None

    async def temporal(self) -> Client:
        if self._temporal is None:
            settings = Settings(_env_file=None, temporal_address=self.temporal_address)
            self._temporal = await connect(settings)
        return self._temporal

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
    """The stack as ``make run`` runs it, on free ports, with its data in a new folder.

    Without ``database_url`` the stack gets an embedded PostgreSQL of its own (stopped at the
    end). It is yielded only once ``/health/ready`` says every operation can run: contracts
    deployed, treasury and fee payer funded (a deposit started earlier would park on a
    treasury that is funded a few seconds later).
    """
    workdir = Path(tempfile.mkdtemp(prefix="settle-bench-"))
    env = isolated_env(workdir)
    anvil_port = int(env["SANDBOX_ANVIL_PORT"])
    proxy_socket = bind_socket("127.0.0.1", 0)
    proxy = RpcProxy(f"http://127.0.0.1:{anvil_port}")
    proxy_server = await serve(proxy.app, sock=proxy_socket)
    database: EmbeddedPostgres | None = None
    if database_url is None:
        database = EmbeddedPostgres(workdir / "postgres", int(env["EMBEDDED_POSTGRES_PORT"]))
        await asyncio.to_thread(database.start)
        await asyncio.to_thread(database.create_database, EMBEDDED_DATABASE)
        database_url = database.url(EMBEDDED_DATABASE)
    env.update(
        {
            "DATABASE_URL": database_url,
            "SANDBOX_DARAJA_CALLBACK_DELAY_SECONDS": str(callback_delay),
            "LOG_LEVEL": "WARNING",
            "SANDBOX_ANVIL_BLOCK_TIME": str(block_time),
            "EVM_BLOCK_TIME_SECONDS": str(block_time),
            # the worker and the API reach anvil through the proxy, which counts calls
            "EVM_RPC_URL": proxy_server.url,
            # one benchmark user starts hundreds of operations a minute on purpose
            **{name.upper(): "0" for name in Settings.model_fields if name.startswith("abuse_")},
            **(extra_env or {}),
        }
    )
    temporal_port = env["TEMPORAL_ADDRESS"].rpartition(":")[2]
    stack = BenchStack(
        env,
        env["API_PUBLIC_URL"],
        env["DARAJA_BASE_URL"],
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
            *dynamic_config_flags(),
        )
        migrate = await stack.spawn(sys.executable, "-m", "store.migrate", name="migrate")
        await migrate.wait()
        await stack.spawn(sys.executable, "-m", "sandbox", name="sandbox")
        chain = await stack.spawn(sys.executable, "-m", "sandbox.chain", name="chain")
        await wait_chain(stack.anvil_url, chain)
        # as the Procfile starts it: the API's answers before the backlog's work on shared cores
        stack.worker = await stack.spawn(
            "nice", "-n", str(WORKER_NICENESS), sys.executable, "worker.py", name="worker"
        )
        stack.api = await stack.spawn(sys.executable, "-m", "api", name="api")
        await wait_http(f"{stack.api_url}/health/ready", timeout=120)
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
        if database is not None:
            await asyncio.to_thread(database.stop)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Measured:
    """CPU seconds the worker, the API and the Temporal dev server used over a measured phase
    (filled at its end)."""

    worker: float = 0.0
    api: float = 0.0
    server: float = 0.0

    def per_op(self, operations: int) -> str:
        if operations <= 0:
            return "n/a"
        return (
            f"worker {self.worker / operations * 1000:.0f} ms, "
            f"API {self.api / operations * 1000:.0f} ms "
            f"(Temporal server {self.server / operations * 1000:.0f} ms)"
        )


@asynccontextmanager
async def measured(
    stack: BenchStack,
    profile: str | None,
    processes: dict[str, asyncio.subprocess.Process] | None = None,
) -> AsyncIterator[Measured]:
    """CPU seconds of the worker and the API over the block; with ``profile``, py-spy flame
    graphs of both over the same block, written to ``bench/profiles/<profile>-worker.svg`` and
    ``-api.svg`` (py-spy must be installed; it attaches to the running processes).
    ``processes`` (``"worker"``/``"api"`` -> process) replaces the stack's own."""
    if processes is None:
        processes = {
            name: p for name, p in (("worker", stack.worker), ("api", stack.api)) if p is not None
        }
    pids = {name: p.pid for name, p in processes.items()}
    server = stack.processes[0].pid if stack.processes else None  # the dev server starts first
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    server_before = cpu_seconds(server) if server is not None else 0.0
    spies: list[asyncio.subprocess.Process] = []
    if profile:
        PROFILES.mkdir(exist_ok=True)
        spy = str(Path(sys.executable).with_name("py-spy"))
        for name, pid in pids.items():
            out = PROFILES / f"{profile}-{name}.svg"
            argv = [spy, "record", "--nonblocking", "-o", str(out), "--pid", str(pid)]
            print("profiling: " + " ".join(argv), flush=True)
            spies.append(
                await asyncio.create_subprocess_exec(
                    *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
                )
            )
    result = Measured()
    try:
        yield result
    finally:
        used = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
        result.worker, result.api = used.get("worker", 0.0), used.get("api", 0.0)
        if server is not None:
            result.server = cpu_seconds(server) - server_before
        for spy_process in spies:
            spy_process.send_signal(signal.SIGINT)  # py-spy writes its SVG on SIGINT
        for spy_process in spies:
            try:
                await asyncio.wait_for(spy_process.wait(), 60)
            except TimeoutError:
                spy_process.kill()


async def activity_count(stack: BenchStack, workflow_id: str) -> int:
    """The activities one completed operation ran, regular (ActivityTaskScheduled events) and
    local (their markers): the raw-Temporal baseline runs that many *regular* no-op activities,
    so running a step locally counts as a gain, not as a smaller baseline."""
    client = await stack.temporal()
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return sum(
        1
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
        or e.marker_recorded_event_attributes.marker_name == LOCAL_ACTIVITY_MARKER
    )


async def read_workflows(stack: BenchStack, tally: Tally, workflow_ids: dict[str, str]) -> None:
    """Settle or note the tally's open operations from their workflows (``workflow_ids``: operation
    -> workflow id), for operations whose rows do not say it: a parked workflow (with the error
    of its ``status`` query), a failed one (with its failure), or what a running one shows."""
    client = await stack.temporal()
    for op in tally.open():
        workflow_id = workflow_ids.get(op)
        if workflow_id is None:
            continue
        job = JobRef.of(await client.get_workflow_handle(workflow_id).describe())
        if job.parked:
            tally.park(op, await status_error(client, workflow_id) or "needs_attention")
        elif job.running:
            tally.note(op, f"workflow running, SettleStatus {job.settle_status}")
        elif job.execution_status == WorkflowExecutionStatus.COMPLETED:
            tally.note(op, f"workflow completed, SettleStatus {job.settle_status}")
        else:
            message = await failure_message(client, workflow_id, job.run_id)
            tally.fail(op, f"workflow {job.temporal_status}: {message or job.settle_status}")
