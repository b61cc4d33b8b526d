"""Rules for an STK push that may already have reached Daraja.

Daraja has no idempotency key, and STK Push Query needs the CheckoutRequestID that a lost answer
did not deliver: the only evidence of an earlier push is its attempt row (written before the
request left), a CheckoutRequestID recorded on it, and a success callback that came for the same
phone and amount soon after. These rules decide, from that evidence alone, whether a push
activity adopts an earlier push, waits, or prompts the customer again. Pure: the store feeds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class AttemptState(StrEnum):
    #: written before the request left; the worker may have died after Daraja accepted it
    SENDING = "sending"
    #: Daraja answered with a CheckoutRequestID (recorded before the activity completed)
    ACCEPTED = "accepted"
    #: Daraja said no, or the request never left: nobody was prompted
    NOT_SENT = "not_sent"
    #: the answer was lost (timeout, 5xx): the customer may have been prompted
    UNKNOWN = "unknown"
    #: no CheckoutRequestID from Daraja, but a matching callback's was taken for it
    ADOPTED = "adopted"
    #: never resolved, and old enough that its prompt has expired on the phone
    EXPIRED = "expired"


#: states of a push that may have prompted the customer and whose CheckoutRequestID is unknown
UNRESOLVED = frozenset({AttemptState.SENDING, AttemptState.UNKNOWN})


@dataclass(frozen=True)
class Attempt:
    attempt: int
    state: AttemptState
    created_at: datetime
    checkout_request_id: str | None = None
    merchant_request_id: str | None = None


@dataclass(frozen=True)
class KeptCallback:
    """A success callback nobody has recorded the CheckoutRequestID of."""

    checkout_request_id: str
    merchant_request_id: str
    phone: str | None
    amount_minor: int | None
    received_at: datetime


@dataclass(frozen=True)
class Adopt:
    """Take this CheckoutRequestID as the deposit's push; send nothing."""

    attempt: int
    checkout_request_id: str
    merchant_request_id: str


@dataclass(frozen=True)
class Wait:
    """An earlier push may still be on the phone: send nothing for ``seconds``."""

    attempt: int
    seconds: float


@dataclass(frozen=True)
class PushAgain:
    """No earlier push can have prompted the customer any more: these attempts are expired."""

    expired: tuple[int, ...] = ()


Resolution = Adopt | Wait | PushAgain


def callback_matches(
    attempt: Attempt,
    callback: KeptCallback,
    *,
    phone: str,
    amount_minor: int,
    match_seconds: float,
) -> bool:
    """Same phone, same amount, received after the attempt was written and within
    ``match_seconds`` of it (Daraja's callback carries no AccountReference to match on)."""
    if callback.phone != phone or callback.amount_minor != amount_minor:
        return False
    return (
        attempt.created_at
        <= callback.received_at
        <= attempt.created_at + timedelta(seconds=match_seconds)
    )


def resolve(
    attempts: list[Attempt],
    callbacks: list[KeptCallback],
    *,
    phone: str,
    amount_minor: int,
    now: datetime,
    prompt_seconds: float,
    match_seconds: float,
) -> Resolution:
    """What a push activity does about the deposit's earlier attempts, in this order:

    1. an attempt with a CheckoutRequestID (accepted or adopted; the latest) is adopted: the
       customer was prompted by it, and the workflow follows that push;
    2. an unresolved attempt (sending, unknown; the oldest first) with a matching kept success
       callback (:func:`callback_matches`) adopts that callback's CheckoutRequestID;
    3. an unresolved attempt younger than ``prompt_seconds`` means wait: its prompt may still be
       on the phone, and a second one would let the customer pay twice;
    4. otherwise push again: the earlier prompts have expired on the phone (a success would have
       sent a callback by now, and a late one becomes an unmatched payment for an admin).

    ``callbacks`` are the ones this deposit may own (offered to it at callback time).
    """
    ordered = sorted(attempts, key=lambda a: a.attempt)
    recorded = [a for a in ordered if a.checkout_request_id and a.state not in UNRESOLVED]
    if recorded:
        last = recorded[-1]
        assert last.checkout_request_id is not None
        return Adopt(last.attempt, last.checkout_request_id, last.merchant_request_id or "")
    unresolved = [a for a in ordered if a.state in UNRESOLVED]
    for attempt in unresolved:
        for callback in sorted(callbacks, key=lambda c: c.received_at):
            if callback_matches(
                attempt,
                callback,
                phone=phone,
                amount_minor=amount_minor,
                match_seconds=match_seconds,
            ):
                return Adopt(
                    attempt.attempt, callback.checkout_request_id, callback.merchant_request_id
                )
    for attempt in unresolved:
        age = (now - attempt.created_at).total_seconds()
        if age < prompt_seconds:
            return Wait(attempt.attempt, prompt_seconds - age)
    return PushAgain(tuple(a.attempt for a in unresolved))


def next_attempt(attempts: list[Attempt]) -> int:
    return max((a.attempt for a in attempts), default=0) + 1
