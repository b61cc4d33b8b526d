"""``python -m runtime.stack``: what ``make run`` runs (``... migrate``: ``make migrate``).

With ``DATABASE_URL`` unset, Settle's database is the embedded PostgreSQL (``store.embedded``):
this launcher starts it before the migrations and the Procfile's processes, and stops it once
they have stopped, so Ctrl-C leaves no server running and no stale lock behind. With
``DATABASE_URL`` set, nothing embedded starts and the URL is used as it is.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from runtime.settings import EMBEDDED_DATABASE, Settings, get_settings
from store.embedded import EmbeddedPostgres, EmbeddedPostgresUnavailable
from store.migrate import head_revision, upgrade


@contextmanager
def database(settings: Settings) -> Iterator[str]:
    """The database URL to use, with the embedded server running while the block runs."""
    if not settings.uses_embedded_database:
        yield settings.database_url
        return
    server = EmbeddedPostgres(Path(settings.embedded_postgres_dir), settings.embedded_postgres_port)
    try:
        server.start()
        server.create_database(EMBEDDED_DATABASE)
    except EmbeddedPostgresUnavailable as exc:
        raise SystemExit(f"Settle could not start its embedded PostgreSQL: {exc}") from exc
    print(
        f"embedded PostgreSQL 18 on 127.0.0.1:{server.port} (data in {server.data_dir})",
        flush=True,
    )
    try:
        yield settings.database_url
    finally:
        server.stop()
        print("embedded PostgreSQL stopped", flush=True)


def migrate(url: str) -> None:
    asyncio.run(upgrade(url))
    print(f"database at {head_revision()}: {url.split('@')[-1]}", flush=True)


def run_procfile(procfile: str = "Procfile") -> int:
    """honcho runs every process; a SIGINT/SIGTERM sent to this launcher alone is passed on."""
    honcho = Path(sys.executable).with_name("honcho")
    child = subprocess.Popen([str(honcho), "-f", procfile, "start"])  # noqa: S603

    def forward(signum: int, _frame: object) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, forward)
    return child.wait()


def main(argv: list[str]) -> int:
    settings = get_settings()
    command = argv[0] if argv else "run"
    if command not in ("run", "migrate"):
        raise SystemExit("usage: python -m runtime.stack [run|migrate]")
    with database(settings) as url:
        migrate(url)
        if command == "migrate":
            return 0
        return run_procfile()


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(code)
