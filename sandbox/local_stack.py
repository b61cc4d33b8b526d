"""Settings for a whole local stack on free ports with its data in one folder.

``make run`` uses the fixed ports of ``.env.example``; a benchmark or the first-run test starts a
second stack beside it (or beside another test run), so every port and data path moves to a
free port and to ``workdir``. The result is an environment for the stack's processes.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def isolated_env(workdir: Path, *, base: dict[str, str] | None = None) -> dict[str, str]:
    """Every port and data path of the local stack, moved to free ports and under ``workdir``.

    ``DATABASE_URL`` is dropped: the stack uses its own embedded PostgreSQL under ``workdir``.
    """
    ports = {
        name: free_port()
        for name in (
            "temporal",
            "ui",
            "api",
            "daraja",
            "metrics",
            "anvil",
            "stripe",
            "smtp",
            "solana",
            "ipfs",
            "postgres",
        )
    }
    env = {k: v for k, v in (base if base is not None else os.environ).items()}
    env.pop("DATABASE_URL", None)
    env.update(
        {
            "SETTLE_ENV": "local",
            "EMBEDDED_POSTGRES_DIR": str(workdir / "postgres"),
            "EMBEDDED_POSTGRES_PORT": str(ports["postgres"]),
            "TEMPORAL_ADDRESS": f"127.0.0.1:{ports['temporal']}",
            "TEMPORAL_UI_URL": f"http://127.0.0.1:{ports['ui']}",
            "DEV_SERVER_UI_PORT": str(ports["ui"]),
            "DEV_SERVER_DB_FILE": str(workdir / "temporal.db"),
            "API_PORT": str(ports["api"]),
            "API_PUBLIC_URL": f"http://127.0.0.1:{ports['api']}",
            "DARAJA_BASE_URL": f"http://127.0.0.1:{ports['daraja']}",
            "SANDBOX_DARAJA_PORT": str(ports["daraja"]),
            "WORKER_METRICS_BIND": f"127.0.0.1:{ports['metrics']}",
            "SANDBOX_ANVIL_PORT": str(ports["anvil"]),
            "SANDBOX_ANVIL_STATE_FILE": str(workdir / "anvil-state.json"),
            "EVM_RPC_URL": f"http://127.0.0.1:{ports['anvil']}",
            "SANDBOX_STRIPE_PORT": str(ports["stripe"]),
            "STRIPE_API_BASE": f"http://127.0.0.1:{ports['stripe']}",
            "SANDBOX_SMTP_PORT": str(ports["smtp"]),
            "SMTP_PORT": str(ports["smtp"]),
            "SANDBOX_MAIL_DIR": str(workdir / "mail"),
            "SANDBOX_SOLANA_PORT": str(ports["solana"]),
            "SOLANA_RPC_URL": f"http://127.0.0.1:{ports['solana']}",
            "SANDBOX_IPFS_PORT": str(ports["ipfs"]),
            "SANDBOX_IPFS_DIR": str(workdir / "ipfs"),
            "IPFS_GATEWAY_URL": f"http://127.0.0.1:{ports['ipfs']}",
            "VERIFICATION_UPLOAD_DIR": str(workdir / "uploads"),
        }
    )
    return env
