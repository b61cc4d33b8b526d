"""The chaos run's accounting: effects matched one to one, what counts as lost or duplicated,
postings per currency, the fault schedule, the operations' mix, and the verdict."""

from __future__ import annotations

import email
import itertools
from email.message import EmailMessage

from bench.chaos.accounting import (
    Problem,
    by_identity,
    more_than_once,
    percentile,
    postings_by_currency,
    reconcile,
    tally,
)
from bench.chaos.effects import Effects, _held, header
from bench.chaos.faults import FaultKind, FaultLog, outage_modes, schedule
from bench.chaos.operations import MIX, End, Kind, Operation, classify, phone_for, plan
from bench.chaos.proxy import HTTP_FAULTS, Mode
from bench.chaos.report import unexplained, verdict
from sandbox.daraja import outcome_for


def test_one_to_one_matches() -> None:
    check = reconcile("charges", {"p1": 1, "p2": 1}, {"p1": 1, "p2": 1})
    assert (check.recorded, check.expected, check.matched) == (2, 2, 2)
    assert check.findings == []


def test_an_effect_twice_is_duplicated_once() -> None:
    check = reconcile("charges", {"p1": 2, "p2": 1}, {"p1": 1, "p2": 1}, names={"p1": "ticket#3"})
    assert (check.lost, check.duplicated, check.matched) == (0, 1, 2)
    (finding,) = check.findings
    assert finding.problem is Problem.DUPLICATED and finding.key == "p1"
    assert finding.evidence == "provider 2x, Settle 1x (ticket#3)"


def test_an_effect_settle_never_recorded_is_lost() -> None:
    """A customer paid and no deposit says so: the money is lost to the books."""
    check = reconcile("payments", {"ws_1": 1}, {})
    (finding,) = check.findings
    assert finding.problem is Problem.LOST
    assert "Settle has no record" in finding.evidence


def test_two_untracked_effects_are_one_lost_key() -> None:
    check = reconcile("payments", {"ws_1": 2}, {})
    assert (check.lost, check.duplicated) == (1, 0)


def test_a_record_without_its_effect_is_lost() -> None:
    """Settle says the treasury sent USDC; the chain has no such transfer."""
    check = reconcile("transfers", {}, {"0xabc": 1})
    (finding,) = check.findings
    assert finding.problem is Problem.LOST
    assert finding.evidence == "Settle 1x, provider 0x"
    assert check.matched == 0


def test_zero_expected_and_zero_recorded_is_no_finding() -> None:
    check = reconcile("ledger credits", {"dust": 0}, {"dust": 0})
    assert check.findings == [] and check.matched == 0


def test_dust_credited_is_lost_not_matched() -> None:
    """A transfer that must not be credited (dust, late) but was: an effect with no row for it."""
    check = reconcile("ledger credits", {"0xdust": 1, "0xok": 1}, {"0xok": 1})
    assert [f.key for f in check.findings] == ["0xdust"]
    assert check.lost == 1


def test_more_than_once_and_tally() -> None:
    counts = tally(["254700011032", "254700011032", "254700024149", None, ""])
    assert counts == {"254700011032": 2, "254700024149": 1}
    assert more_than_once(counts) == ["254700011032"]


def test_postings_per_currency() -> None:
    totals = postings_by_currency([("KES", 100), ("KES", -100), ("USDC", 5), ("USDC", -4)])
    assert [(t.currency, t.postings, t.net_minor, t.moved_minor) for t in totals] == [
        ("KES", 2, 0, 100),
        ("USDC", 2, 1, 5),
    ]


def test_percentile_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0, 4.0], 0.5) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 0.99) == 99.0
    assert percentile([1.0], 0.99) == 1.0


def test_schedule_has_every_fault_asked_for() -> None:
    faults = schedule(
        900,
        worker_kills=20,
        server_restarts=2,
        providers=["daraja", "stripe", "anvil", "solana", "smtp"],
        outage_seconds=120,
        db_cuts=20,
    )
    kinds = [f.kind for f in faults]
    assert kinds.count(FaultKind.WORKER_KILL) == 20
    assert kinds.count(FaultKind.SERVER_RESTART) == 2
    assert kinds.count(FaultKind.DB_CUT) == 20
    outages = [f for f in faults if f.kind is FaultKind.OUTAGE]
    assert [f.target for f in outages] == ["daraja", "stripe", "anvil", "solana", "smtp"]
    # in turn: one provider down at a time
    for first, second in itertools.pairwise(outages):
        assert second.at >= first.at + first.seconds
    # kills alternate between the two workers, all within the load
    assert {f.target for f in faults if f.kind is FaultKind.WORKER_KILL} == {"0", "1"}
    assert all(0 < f.at < 900 for f in faults)
    assert [f.at for f in faults] == sorted(f.at for f in faults)


def test_an_outage_cycles_through_the_failure_modes() -> None:
    slices = outage_modes(HTTP_FAULTS, 120)
    assert [m for m, _ in slices] == [Mode.ERROR, Mode.TIMEOUT, Mode.DROP]
    assert sum(s for _, s in slices) == 120


def test_plan_covers_every_variant_and_is_reproducible() -> None:
    ops = plan(100, seed=14)
    assert len(ops) == 100 and [op.n for op in ops] == list(range(100))
    wanted = {(kind, variant) for kind, _, variants in MIX for variant in variants}
    assert wanted <= {(op.kind, op.variant) for op in ops}
    assert [(o.kind, o.variant) for o in ops] == [(o.kind, o.variant) for o in plan(100, seed=14)]


def test_phones_are_unique_and_pick_the_sandbox_outcome() -> None:
    assert outcome_for(phone_for(7, "cancelled")).result_code == 1032
    assert outcome_for(phone_for(7, "no_callback")).callbacks == 0
    assert outcome_for(phone_for(7, "paid")).result_code == 0
    assert len({phone_for(n, "paid") for n in range(1000)}) == 1000


def test_classify_second_acts() -> None:
    late = Operation(1, Kind.INTENT, "late_transfer")
    assert classify(late, "paid", None)[0] is End.OPEN
    late.detail["late_seen"] = True
    assert classify(late, "paid", None)[0] is End.ENDED
    refund = Operation(2, Kind.TICKET, "refunded")
    assert classify(refund, "completed", None)[0] is End.OPEN
    assert classify(refund, "refunded", None)[0] is End.ENDED
    parked = classify(Operation(3, Kind.MPESA, "paid"), "needs_attention", "treasury short")
    assert parked == (End.PARKED, "treasury short")


def test_verdict_wants_every_operation_ended_or_parked_with_a_reason() -> None:
    ended = Operation(1, Kind.MPESA, "cancelled")
    ended.settle(End.ENDED, "failed", "the customer cancelled", 1.0)
    silent = Operation(2, Kind.MPESA, "cancelled")
    silent.settle(End.ENDED, "failed", "", 1.0)
    parked = Operation(3, Kind.TICKET, "visa")
    parked.settle(End.PARKED, "needs_attention", "mint failed: ...", 1.0)
    running = Operation(4, Kind.VERIFY, "genuine")
    running.wait("active")
    assert unexplained([ended, parked]) == []
    assert unexplained([silent, running]) == [
        "mpesa_deposit/cancelled#2 ended failed without a reason",
        "verification/genuine#4 still open: active",
    ]
    effects = Effects(checks=[reconcile("charges", {"p": 2}, {"p": 1})])
    result = verdict([ended, parked], effects, FaultLog())
    assert (result.lost, result.duplicated, result.ok) == (0, 1, False)
    assert verdict([ended, parked], Effects(), FaultLog()).ok


def test_a_parked_operation_holds_its_effect_once() -> None:
    """A parked deposit's payment is the operator's to settle, not lost; a second one is still
    a duplicate. A failed one records nothing: a payment for it is lost."""
    assert _held(True, "credited", 1) == 1
    assert _held(False, "needs_attention", 1) == 1
    assert _held(False, "needs_attention", 0) == 0
    assert (
        reconcile("payments", {"ws": 2}, {"ws": _held(False, "needs_attention", 2)}).duplicated == 1
    )
    assert reconcile("payments", {"ws": 1}, {"ws": _held(False, "failed", 1)}).lost == 1


def test_a_folded_header_is_read_whole() -> None:
    """A long X-Settle-Reference is folded onto a second line by the email policy."""
    message = EmailMessage()
    message["X-Settle-Reference"] = (
        "alert:" + "e15d2ee4-13aa-4a87-801c-b3385a73277a" + ":ops@settle.local"
    )
    parsed = email.message_from_bytes(message.as_bytes())
    assert header(parsed, "X-Settle-Reference") == (
        "alert:e15d2ee4-13aa-4a87-801c-b3385a73277a:ops@settle.local"
    )


def test_a_resend_with_the_same_identity_is_redelivered_not_duplicated() -> None:
    received = [("n1", "<a@x>"), ("n1", "<a@x>"), ("n2", "<b@x>"), ("n3", "<c@x>"), ("n3", "<d@x>")]
    distinct, resent = by_identity(received)
    assert distinct == {"n1": 1, "n2": 1, "n3": 2} and resent == 1
    check = reconcile("emails", distinct, {"n1": 1, "n2": 1, "n3": 1})
    assert check.duplicated == 1 and check.lost == 0
    assert [f.key for f in check.findings] == ["n3"]  # two Message-IDs for one notification
