"""The chaos run's table: operations by kind and outcome, faults injected, effects lost and
duplicated (with their evidence), customers prompted or charged twice, postings per currency,
completion p50/p99, and the command that reproduces it. :func:`verdict` is what the run (and
the short test) asserts."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from bench.chaos.accounting import percentile
from bench.chaos.effects import Effects
from bench.chaos.faults import FaultLog
from bench.chaos.operations import End, Operation

#: findings printed per effect (the rest counted)
EXAMPLES = 10


@dataclass(frozen=True)
class Verdict:
    lost: int
    duplicated: int
    #: operations still open at the end, or ended/parked without a reason where one is owed
    unexplained: list[str]
    fault_errors: list[str]

    @property
    def ok(self) -> bool:
        return (
            not self.lost and not self.duplicated and not self.unexplained and not self.fault_errors
        )


#: final statuses that are failures: they owe a reason
FAILURES = {
    "failed",
    "abandoned",
    "payment_failed",
    "expired",
    "expired_partially_paid",
    "stopped",
    "needs_attention",
}


def unexplained(ops: list[Operation]) -> list[str]:
    """Operations not ended or parked with a reason: still open, or a failure with none."""
    out = []
    for op in ops:
        if op.end is End.OPEN:
            out.append(f"{op.label} still open: {op.status}")
        elif op.end in (End.PARKED, End.REFUSED) and not op.reason.strip():
            out.append(f"{op.label} {op.end} without a reason")
        elif op.end is End.ENDED and op.status in FAILURES and not op.reason.strip():
            out.append(f"{op.label} ended {op.status} without a reason")
    return out


def verdict(ops: list[Operation], effects: Effects, faults: FaultLog) -> Verdict:
    return Verdict(effects.lost, effects.duplicated, unexplained(ops), faults.errors)


def as_json(ops: list[Operation], effects: Effects, faults: FaultLog) -> dict[str, Any]:
    """What a test asserts on: the verdict's parts, each finding with its evidence."""
    result = verdict(ops, effects, faults)
    return {
        "ok": result.ok,
        "lost": result.lost,
        "duplicated": result.duplicated,
        "redelivered": sum(c.redelivered for c in effects.checks),
        "unexplained": result.unexplained,
        "fault_errors": result.fault_errors,
        "operations": len(ops),
        "ends": dict(Counter(str(op.end) for op in ops)),
        "faults": dict(Counter(str(i.fault.kind.name) for i in faults.injected)),
        "findings": [
            {"effect": f.effect, "problem": str(f.problem), "key": f.key, "evidence": f.evidence}
            for check in effects.checks
            for f in check.findings
        ],
        "prompted_twice": effects.prompted_twice,
        "charged_twice": effects.charged_twice,
    }


def _outcome(op: Operation) -> str:
    if op.end is End.ENDED:
        extra = f" ({op.detail['verdict']})" if op.detail.get("verdict") else ""
        return f"{op.status}{extra}"
    return f"{op.end}: {op.status}"


def render(
    ops: list[Operation],
    effects: Effects,
    faults: FaultLog,
    *,
    command: str,
    elapsed: float,
    machine: str,
) -> str:
    lines = [f"Chaos run: {len(ops)} operations over {elapsed:.0f} s, {machine}", ""]
    lines.append("operations by kind and outcome")
    by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    for op in ops:
        by_kind[f"{op.kind}/{op.variant}"][_outcome(op)] += 1
    for kind in sorted(by_kind):
        outcomes = ", ".join(f"{n} {o}" for o, n in by_kind[kind].most_common())
        lines.append(f"  {kind:<42} {sum(by_kind[kind].values()):>4}  {outcomes}")
    reasons: Counter[str] = Counter()
    for op in ops:
        if op.end in (End.PARKED, End.REFUSED) or (op.end is End.ENDED and op.status in FAILURES):
            reasons[f"{op.kind} {op.end} {op.status}: {' '.join(op.reason.split())[:160]}"] += 1
    if reasons:
        lines.append("  reasons given (failed, parked, refused):")
        lines += [f"    {n} x {r}" for r, n in reasons.most_common(25)]
    ends = Counter(op.end for op in ops)
    lines.append("  " + ", ".join(f"{n} {e}" for e, n in sorted(ends.items())))
    lines.append("")
    lines.append("faults injected")
    kinds = Counter(i.fault.kind for i in faults.injected)
    for kind, n in kinds.items():
        lines.append(f"  {n:>4} x {kind}")
    for injected in faults.injected:
        if injected.fault.target in ("daraja", "stripe", "anvil", "solana", "smtp"):
            lines.append(f"       at {injected.at:.0f} s: {injected.detail}")
    for error in faults.errors:
        lines.append(f"  NOT INJECTED: {error}")
    lines.append("")
    lines.append("external effects, one to one against Settle's rows")
    lines.append(
        f"  {'effect':<72} {'provider':>8} {'Settle':>7} {'lost':>5} {'dup':>5} {'resent':>6}"
    )
    for check in effects.checks:
        lines.append(
            f"  {check.effect:<72} {check.recorded:>8} {check.expected:>7} "
            f"{check.lost:>5} {check.duplicated:>5} {check.redelivered:>6}"
        )
    lines.append(f"  effects lost: {effects.lost}, effects duplicated: {effects.duplicated}")
    lines.append(
        "  redelivered, same id (at-least-once, deduped by the receiver): "
        f"{sum(c.redelivered for c in effects.checks)}"
    )
    for check in effects.checks:
        for finding in check.findings[:EXAMPLES]:
            lines.append(
                f"    {finding.problem.upper()} {check.effect.split(' /')[0]}: {finding.key}: {finding.evidence}"
            )
        if len(check.findings) > EXAMPLES:
            lines.append(f"    ... and {len(check.findings) - EXAMPLES} more")
    lines.append(
        f"  customers prompted twice: {len(effects.prompted_twice)}"
        + (
            f" ({', '.join(f'{k}: {v}x' for k, v in sorted(effects.prompted_twice.items())[:EXAMPLES])})"
            if effects.prompted_twice
            else ""
        )
    )
    lines.append(
        f"  customers charged twice: {len(effects.charged_twice)}"
        + (
            f" ({', '.join(f'{k}: {v}x' for k, v in sorted(effects.charged_twice.items())[:EXAMPLES])})"
            if effects.charged_twice
            else ""
        )
    )
    lines.append("")
    lines.append("postings per currency")
    for total in effects.postings:
        lines.append(
            f"  {total.currency:<6} {total.postings:>6} postings, moved {total.moved_minor:,} minor units, net {total.net_minor}"
        )
    if effects.unbalanced_entries:
        lines.append(f"  UNBALANCED entries: {', '.join(effects.unbalanced_entries[:EXAMPLES])}")
    durations = [
        op.finished - op.started
        for op in ops
        if op.finished is not None and op.started is not None and op.end is not End.REFUSED
    ]
    p50, p99 = percentile(durations, 0.5), percentile(durations, 0.99)
    lines.append("")
    lines.append(
        "completion (request -> ended or parked) "
        + (
            f"p50 {p50:.1f} s, p99 {p99:.1f} s over {len(durations)}"
            if p50 is not None and p99 is not None
            else "n/a"
        )
    )
    result = verdict(ops, effects, faults)
    lines.append("")
    if result.ok:
        lines.append("VERDICT: 0 lost, 0 duplicated, every operation ended or parked with a reason")
    else:
        lines.append(
            f"VERDICT: FAILED: {result.lost} lost, {result.duplicated} duplicated, "
            f"{len(result.unexplained)} not ended or parked with a reason, "
            f"{len(result.fault_errors)} faults not injected"
        )
        lines += [f"  {u}" for u in result.unexplained[:25]]
    lines.append(f"reproduce: {command}")
    return "\n".join(lines)
