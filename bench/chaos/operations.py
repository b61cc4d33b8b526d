"""The chaos run's operations: every kind Settle runs, each in the variants that take its other
paths (a cancelled prompt, a declined card, a dust transfer, a tampered file ...), and how an
operation's end is read from Settle's rows.

Pure: which operation the ``n``-th one is (:func:`plan`) and what a row's status means
(:func:`classify`) are decided here, so they can be tested without a stack.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    MPESA = "mpesa_deposit"
    INTENT = "onchain_intent"
    TICKET = "ticket_purchase"
    ANCHOR = "credential_anchor"
    ANCHOR_BATCH = "credential_batch"
    VERIFY = "verification"
    PROOF = "proof"


class End(StrEnum):
    """Where an operation is at the end of the run (the target: none ``open``)."""

    ENDED = "ended"  # a final status of its own: succeeded or failed, with the reason
    PARKED = "parked"  # waiting for an operator, with the reason
    REFUSED = "refused"  # the API refused it (nothing started), with the answer
    OPEN = "open"  # still running when the run ended: the target is none


#: (kind, weight, {variant: weight}). Variants are the paths: the Daraja sandbox picks an STK
#: outcome by the phone's last four digits, the Stripe sandbox a card's by the test card.
MIX: tuple[tuple[Kind, int, dict[str, int]], ...] = (
    (
        Kind.MPESA,
        30,
        {
            "paid": 45,
            "cancelled": 15,
            "timed_out": 10,
            "no_callback": 20,
            "cancelled_no_callback": 10,
        },
    ),
    (Kind.INTENT, 14, {"exact": 50, "dust_then_exact": 25, "late_transfer": 25}),
    (
        Kind.TICKET,
        24,
        {"visa": 40, "declined": 20, "3ds_ok": 15, "3ds_failed": 5, "refunded": 20},
    ),
    (Kind.ANCHOR, 8, {"single": 1}),
    (Kind.ANCHOR_BATCH, 6, {"batch_of_4": 1}),
    (Kind.VERIFY, 10, {"genuine": 55, "tampered": 45}),
    (Kind.PROOF, 8, {"genuine": 60, "tampered": 40}),
)

#: Daraja sandbox phone suffixes (sandbox/daraja.py) per M-Pesa variant
PHONE_SUFFIX = {
    "paid": "4149",
    "cancelled": "1032",
    "timed_out": "1037",
    "no_callback": "0000",
    "cancelled_no_callback": "0003",
}
#: Stripe sandbox test cards (sandbox/stripe.py) per ticket variant
CARD = {
    "visa": "pm_card_visa",
    "declined": "pm_card_chargeDeclined",
    "3ds_ok": "pm_card_threeDSecure2Required",
    "3ds_failed": "pm_card_threeDSecure2Required",
    "refunded": "pm_card_visa",
}
BATCH_SIZE = 4


@dataclass
class Operation:
    n: int
    kind: Kind
    variant: str
    #: Settle's id for it (deposit, intent, purchase, job; the first credential of a batch)
    id: str | None = None
    workflow_id: str | None = None
    started: float | None = None
    finished: float | None = None
    end: End = End.OPEN
    #: the final status (``credited``, ``payment_failed`` ...) or what it waits on
    status: str = "not started"
    reason: str = ""
    #: what the reconciliation needs: phone, wallet, transfers, credential ids ...
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.variant}#{self.n}"

    def settle(self, end: End, status: str, reason: str, at: float) -> None:
        self.end, self.status, self.reason = end, status, reason
        if end is not End.OPEN and self.finished is None:
            self.finished = at

    def wait(self, status: str) -> None:
        """Still open: say what it is waiting on."""
        if self.end is End.OPEN:
            self.status = status


def plan(count: int, seed: int) -> list[Operation]:
    """``count`` operations drawn from :data:`MIX`, every kind and variant at least once when
    ``count`` allows (the first ones go round them), the rest at random by weight."""
    rng = random.Random(seed)
    every = [(kind, variant) for kind, _, variants in MIX for variant in variants]
    ops: list[Operation] = []
    for n in range(count):
        if n < len(every):
            kind, variant = every[n]
        else:
            kind, _, variants = rng.choices(MIX, weights=[w for _, w, _ in MIX])[0]
            variant = rng.choices(list(variants), weights=list(variants.values()))[0]
        ops.append(Operation(n, kind, variant))
    rng.shuffle(ops)
    for n, op in enumerate(ops):
        op.n = n
    return ops


def phone_for(n: int, variant: str) -> str:
    """A phone of its own per deposit (so prompts are counted per customer), whose last four
    digits choose the Daraja sandbox's outcome."""
    return f"2547{n % 10000:04d}{PHONE_SUFFIX[variant]}"


MPESA_ENDED = {"credited", "failed", "abandoned"}
INTENT_ENDED = {"paid", "overpaid", "expired", "expired_partially_paid", "stopped"}
PURCHASE_ENDED = {"completed", "payment_failed", "refunded", "voided", "cancelled"}
PARKED = "needs_attention"


def classify(op: Operation, status: str, reason: str | None) -> tuple[End, str]:
    """Where ``op`` is, from its row's ``status`` (and failure reason). Variants that have a
    second act (a refund after the purchase, a late transfer after the intent) end with it."""
    reason = reason or ""
    if status == PARKED:
        return End.PARKED, reason or "needs_attention (no reason on the row)"
    if op.kind is Kind.MPESA:
        return (End.ENDED if status in MPESA_ENDED else End.OPEN), reason
    if op.kind is Kind.INTENT:
        if status not in INTENT_ENDED:
            return End.OPEN, reason
        late = op.variant == "late_transfer" and status in ("paid", "overpaid")
        if late and not op.detail.get("late_seen"):
            return End.OPEN, "paid; waiting for the late transfer to be recorded"
        return End.ENDED, reason
    if op.kind is Kind.TICKET:
        if status not in PURCHASE_ENDED:
            return End.OPEN, reason
        if (
            op.variant == "refunded"
            and status == "completed"
            and not op.detail.get("refund_failed")
        ):
            return End.OPEN, "completed; refund to come"
        return End.ENDED, reason
    if op.kind in (Kind.ANCHOR, Kind.ANCHOR_BATCH):
        return (End.ENDED if status in ("confirmed", "failed") else End.OPEN), reason
    return (End.ENDED if status in ("completed", "failed") else End.OPEN), reason
