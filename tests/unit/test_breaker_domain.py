"""Which provider an activity calls, which of its errors open the breaker, which queues it holds."""

from __future__ import annotations

from domain.breakers import (
    PROVIDER_KEYS,
    PROVIDER_QUEUES,
    Provider,
    holder,
    is_unavailable,
    provider_for,
)
from domain.errors import CardDeclined, EmailUnavailable, StripeRejected, StripeUnavailable
from domain.operation_queues import KIND_QUEUES
from domain.queues import RATE_LIMITED_QUEUES, ActivityQueue


def test_only_unavailable_errors_count_and_through_their_cause() -> None:
    assert is_unavailable(Provider.STRIPE, StripeUnavailable("502"))
    assert not is_unavailable(Provider.STRIPE, StripeRejected("bad request"))
    assert not is_unavailable(Provider.STRIPE, CardDeclined("declined"))
    # another provider's outage is not this one's
    assert not is_unavailable(Provider.STRIPE, EmailUnavailable("smtp down"))
    try:
        try:
            raise StripeUnavailable("connection refused")
        except StripeUnavailable as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert is_unavailable(Provider.STRIPE, outer)


def test_notify_queue_counts_email_only() -> None:
    assert provider_for(ActivityQueue.NOTIFY, "notify.email") == Provider.SMTP
    assert provider_for(ActivityQueue.NOTIFY, "notify.webhook") is None
    assert provider_for(ActivityQueue.DB, "tickets.update") is None
    assert provider_for(ActivityQueue.CREDENTIALS, "credentials.submit_anchor") == Provider.EVM


def test_each_breaker_holds_its_own_queues_only() -> None:
    held = [q for queues in PROVIDER_QUEUES.values() for q in queues]
    assert len(held) == len(set(held)), "two breakers would hold one queue"
    # the shared queues (db above all) are never held by a breaker
    assert ActivityQueue.DB not in held and ActivityQueue.FX not in held
    for provider, key in PROVIDER_KEYS.items():
        assert RATE_LIMITED_QUEUES[key] in PROVIDER_QUEUES[provider]
    # a Stripe outage leaves every queue of the ticket purchase but Stripe's running
    stripe = set(PROVIDER_QUEUES[Provider.STRIPE])
    others = set(KIND_QUEUES[next(k for k in KIND_QUEUES if k.value == "ticket_purchase")])
    assert stripe & others == {ActivityQueue.STRIPE}
    assert holder(Provider.STRIPE) == "breaker:stripe"
