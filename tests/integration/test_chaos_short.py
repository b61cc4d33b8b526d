"""The chaos run, short (issue 14 §4): 100 operations of every kind against 2 workers and 2 APIs
while a worker is SIGKILLed 3 times, the dev server once, Stripe fails for 24 s (503s, then no
answers, then answers dropped after the request reached it) and every PostgreSQL connection is
cut 3 times. Then every external effect the sandboxes recorded is matched one to one against
Settle's rows: nothing lost, nothing duplicated, every operation ended or parked with a reason.

``python -m bench.chaos`` in its own process, as ``make chaos`` runs it (the full run's
defaults are larger: see bench/README.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHORT = [
    "--operations",
    "100",
    "--duration",
    "75",
    "--drain",
    "90",
    "--worker-kills",
    "3",
    "--server-restarts",
    "1",
    "--providers",
    "stripe",
    "--outage-seconds",
    "24",
    "--db-cuts",
    "3",
    "--clean",
]
#: stack start (~20 s), 75 s of load, the drain, the accounting: about 2.5 minutes on 2 cores
#: (3.5 with other test runs beside it); the bound only stops a run that hangs
TIMEOUT_SECONDS = 420
#: effects of the known double prompt (see below)
DOUBLE_PROMPT_EFFECTS = ("STK prompts", "M-Pesa payments")


def known_double_prompt_only(result: dict) -> bool:
    """Every finding is the known double prompt: a deposit whose push reached Daraja but whose
    CheckoutRequestID Settle never recorded (the worker was killed between the push and
    recording it, or the push's answer was lost) is prompted again when no success callback
    comes, so its phone shows two prompts (and, when the first was paid silently, a payment no
    deposit records). The durable push attempts narrowed it (the second push waits until the
    first prompt has expired) but Daraja has no idempotency key and a failure callback names
    no phone: a lost push that was declined or timed out is still pushed again. Seen on
    2026-12-01 after the fixes (``mpesa_deposit/timed_out``, its push's answer lost to a kill or cut),
    so the test stays strict about everything else (bench/README.md)."""
    findings = result["findings"]
    twice = set(result["prompted_twice"])
    return bool(findings) and all(
        f["effect"].startswith(DOUBLE_PROMPT_EFFECTS)
        and any(p in f["evidence"] or p == f["key"] for p in twice)
        for f in findings
    )


def test_short_chaos_run_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.chaos", *SHORT, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    table = done.stdout[-8000:] + done.stderr[-4000:]
    print(table)  # the run's table, shown with -rP or on failure
    assert out.exists(), f"the run ended without its accounting (exit {done.returncode}):\n{table}"
    result = json.loads(out.read_text())
    # the run did what it says: every fault injected, every operation started
    assert result["fault_errors"] == [], table
    assert result["faults"] == {"WORKER_KILL": 3, "SERVER_RESTART": 1, "OUTAGE": 1, "DB_CUT": 3}, (
        table
    )
    assert result["operations"] == 100
    # every operation ended or parked with a reason
    assert result["unexplained"] == [], table
    if (result["lost"] or result["duplicated"]) and known_double_prompt_only(result):
        pytest.xfail(
            "known double-prompt bug (issue 14 §4: a push whose CheckoutRequestID was never "
            f"recorded is prompted again): {json.dumps(result['findings'])}"
        )
    assert (result["lost"], result["duplicated"]) == (0, 0), table
    assert result["charged_twice"] == {}, table
    assert result["ok"] and done.returncode == 0, table
