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


def known_unseen_payment_only(result: dict) -> bool:
    """Every finding is the one payment Settle cannot see: a push whose answer was lost (the
    worker killed or the connection cut after Daraja accepted it), answered by a customer whose
    phone never calls back (the sandbox's no-callback phones). STK Push Query needs the
    CheckoutRequestID the lost answer carried, so the deposit fails without prompting again
    (``mpesa-deposit-no-second-prompt``) and that payment is on no row of Settle's; only a
    statement from Daraja would show it. Never a second prompt or a second charge: those stay
    strict below."""
    findings = result["findings"]
    return bool(findings) and all(
        f["effect"].startswith("M-Pesa payments")
        and f["problem"] == "lost"
        and "none with this CheckoutRequestID" in f["evidence"]
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
    # no customer prompted or charged twice, whatever else happened
    assert result["prompted_twice"] == {}, table
    assert result["charged_twice"] == {}, table
    if result["lost"] and not result["duplicated"] and known_unseen_payment_only(result):
        pytest.xfail(
            "a payment on a push whose answer was lost and whose phone never called back: "
            f"Daraja cannot be asked about it (bench/README.md): {json.dumps(result['findings'])}"
        )
    assert (result["lost"], result["duplicated"]) == (0, 0), table
    assert result["ok"] and returncode == 0, table
