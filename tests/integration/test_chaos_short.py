"""The chaos run, short (issue 14 §4): 100 operations of every kind against 2 workers and 2 APIs
while a worker is SIGKILLed 3 times, the dev server once, Stripe fails for 24 s (503s, then no
answers, then answers dropped after the request reached it) and every PostgreSQL connection is
cut 3 times. Then every external effect the sandboxes recorded is matched one to one against
Settle's rows: nothing lost, nothing duplicated, every operation ended or parked with a reason.

``python -m bench.chaos`` in its own process, as ``make chaos`` runs it (the full run's
defaults are larger: see bench/README.md), started with the session and run beside the rest of
the suite (``tests/fixtures/chaos_background.py``); this test waits for it.
"""

from __future__ import annotations

import json

import pytest

from tests.fixtures import chaos_background

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


def test_short_chaos_run_loses_and_duplicates_nothing() -> None:
    # started when the session started (tests/fixtures/chaos_background.py): here it is waited for
    run = chaos_background.take()
    returncode, table = run.wait()
    print(table)  # the run's table, shown with -rP or on failure
    out = run.json_path
    assert out.exists(), f"the run ended without its accounting (exit {returncode}):\n{table}"
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
    assert result["ok"] and returncode == 0, table
