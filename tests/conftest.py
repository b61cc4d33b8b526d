"""Root of the suite: shared fixtures come from ``tests/fixtures/`` plugins.

Layout: ``unit/`` (time-skipping server, mocked activities, pure code), ``integration/`` (real dev
server, sandboxes, databases), ``e2e/`` (HTTP API -> workflow -> database).
"""

from __future__ import annotations

import os
import sys

import pytest

pytest_plugins = [
    "tests.fixtures.temporal",
    "tests.fixtures.databases",
    "tests.fixtures.chain",
    "tests.fixtures.solana",
    "tests.fixtures.stack",
    "tests.fixtures.chaos_background",
]

_exit_status: int | None = None


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave without interpreter teardown once pytest has reported.

    The Temporal SDK's Rust bridge threads can abort CPython's finalization
    ("PyGILState_Release ... finalizing", temporalio/sdk-python#300), which would turn a green
    run into exit code 134 after the summary has been printed. The exit code is pytest's own.
    """
    if _exit_status is None or os.environ.get("SETTLE_TEST_SOFT_EXIT") == "1":
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_status)
