"""One-to-one accounting of external effects against Settle's records (pure; tested alone).

For each kind of effect the providers can see (an STK payment, a PaymentIntent charged, a
treasury transfer, a mint, an email ...), two counts per key (a checkout request, a purchase, a
wallet ...): how many times the provider recorded the effect, and how many Settle's rows say
happened (0 or 1). Equal counts match. Otherwise:

- **lost**: one side has it and the other does not: the provider recorded an effect Settle has
  no record of (a customer paid, no deposit says so), or Settle recorded one the provider never
  saw (a deposit credited for a payment that was never made);
- **duplicated**: the provider recorded it more often than Settle's rows allow (a customer
  charged twice, a second mint for one ticket, an email sent twice).

Email and webhooks are at-least-once by nature (a worker killed after the send, before its row
says so, sends again): each carries a stable identity (``Message-ID``, ``webhook-id``) and the
receiver dedupes by it. :func:`by_identity` counts them as that receiver does: the distinct
identities are the effects, a resend with the same identity is **redelivered** (reported, not a
duplicated effect); a second identity for one notification is still duplicated.

Every finding carries the key and the counts as evidence, so a report names what it found.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Problem(StrEnum):
    LOST = "lost"
    DUPLICATED = "duplicated"


@dataclass(frozen=True)
class Finding:
    effect: str
    problem: Problem
    key: str
    #: the provider's count and Settle's, and whatever else names it
    evidence: str


@dataclass
class EffectCheck:
    """One kind of effect, reconciled."""

    effect: str
    #: effects the provider recorded (all keys)
    recorded: int = 0
    #: effects Settle's rows account for
    expected: int = 0
    matched: int = 0
    findings: list[Finding] = field(default_factory=list)
    #: resends the receiver dedupes (same Message-ID / webhook-id): at-least-once, not duplicated
    redelivered: int = 0

    @property
    def lost(self) -> int:
        return sum(1 for f in self.findings if f.problem is Problem.LOST)

    @property
    def duplicated(self) -> int:
        return sum(1 for f in self.findings if f.problem is Problem.DUPLICATED)


def reconcile(
    effect: str,
    recorded: Mapping[str, int],
    expected: Mapping[str, int],
    *,
    names: Mapping[str, str] | None = None,
) -> EffectCheck:
    """Match ``recorded`` (key -> times the provider saw the effect) one to one against
    ``expected`` (key -> times Settle's rows say it happened). ``names`` adds evidence per key
    (the operation it belongs to, its row's status)."""
    check = EffectCheck(effect, sum(recorded.values()), sum(expected.values()))
    for key in sorted(set(recorded) | set(expected)):
        seen, wanted = recorded.get(key, 0), expected.get(key, 0)
        where = f" ({names[key]})" if names and key in names else ""
        if seen == wanted:
            check.matched += seen
            continue
        if wanted and seen > wanted:
            check.matched += wanted
            check.findings.append(
                Finding(
                    effect, Problem.DUPLICATED, key, f"provider {seen}x, Settle {wanted}x{where}"
                )
            )
        elif not wanted:
            check.findings.append(
                Finding(effect, Problem.LOST, key, f"provider {seen}x, Settle has no record{where}")
            )
        else:  # seen < wanted
            check.matched += seen
            check.findings.append(
                Finding(effect, Problem.LOST, key, f"Settle {wanted}x, provider {seen}x{where}")
            )
    return check


def by_identity(received: Iterable[tuple[str, str]]) -> tuple[Counter[str], int]:
    """(key, identity) per message received -> (key -> distinct identities, resends): what a
    receiver deduping by ``Message-ID`` / ``webhook-id`` sees as separate messages, and how many
    arrivals it dropped as the same message again."""
    seen: dict[str, set[str]] = {}
    total = 0
    for key, identity in received:
        if not key:
            continue
        total += 1
        seen.setdefault(key, set()).add(identity)
    distinct = Counter({key: len(ids) for key, ids in seen.items()})
    return distinct, total - sum(distinct.values())


def more_than_once(counts: Mapping[str, int]) -> list[str]:
    """Keys seen twice or more (a customer prompted twice, charged twice)."""
    return sorted(key for key, n in counts.items() if n > 1)


def tally(keys: Iterable[str | None]) -> Counter[str]:
    """How many times each (non-empty) key occurs."""
    return Counter(key for key in keys if key)


@dataclass(frozen=True)
class CurrencyTotal:
    currency: str
    postings: int
    #: sum of every posting's amount: 0 when every entry balances
    net_minor: int
    #: sum of the positive legs: what moved
    moved_minor: int


def postings_by_currency(postings: Iterable[tuple[str, int]]) -> list[CurrencyTotal]:
    """(currency, amount) legs -> one total per currency, by name."""
    count: Counter[str] = Counter()
    net: Counter[str] = Counter()
    moved: Counter[str] = Counter()
    for currency, amount in postings:
        count[currency] += 1
        net[currency] += amount
        moved[currency] += max(amount, 0)
    return [CurrencyTotal(c, count[c], net[c], moved[c]) for c in sorted(count)]


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return ordered[rank]
