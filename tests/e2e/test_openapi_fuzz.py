"""Schemathesis over the running API's OpenAPI schema: no input, however odd, gets a 5xx.

Runs the real ``schemathesis`` CLI in a subprocess against the stack's API (real sockets, real
Temporal, real sandboxes), authenticated as an admin of a tenant of its own so every route is
reachable. Checks: ``not_a_server_error`` (a 503 from a dependency that is really down would
count, and none is down here).
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

from tests.fixtures.stack import Stack

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
#: routes that change state shared by every tenant of the dev server (task-queue rate limits):
#: fuzzing them would pause queues under the tests that follow; tests/e2e/test_queues_rate_limits
#: covers them, good and bad input
SHARED_STATE = (
    r"^/api/v1/(queues/\{name\}/(pause|resume|clear)"
    r"|rate-limits/(reset/\{key\}|emergency-stop|resume))$"
)
#: fixed so that CI is repeatable; SETTLE_FUZZ_SEED=<n> (or "random") explores further
SEED = os.environ.get("SETTLE_FUZZ_SEED", "20261125")
EXAMPLES_PER_OPERATION = 8


async def test_no_generated_request_gets_a_server_error(stack: Stack, tmp_path: Path) -> None:
    token = stack.token(f"fuzz-{uuid.uuid4().hex[:6]}", f"fuzz-{uuid.uuid4().hex[:6]}", ["admin"])
    process = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS),
        "run",
        f"{stack.api.base_url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--phases",
        "examples,fuzzing",
        "--header",
        f"Authorization: Bearer {token}",
        "--request-timeout",
        "30",
        "--suppress-health-check",
        "all",
        "--no-color",
        "--exclude-path-regex",
        SHARED_STATE,
        *([] if SEED == "random" else ["--seed", SEED]),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
    )
    output, _ = await process.communicate()
    report = output.decode(errors="replace")
    assert process.returncode == 0, report[-6000:]
