"""The rules for an STK push that may already have reached Daraja (domain.push_attempts)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.push_attempts import (
    Adopt,
    Attempt,
    AttemptState,
    KeptCallback,
    PushAgain,
    Wait,
    next_attempt,
    resolve,
)

T0 = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
PHONE, AMOUNT = "254712345678", 3_000


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def attempt(n: int, state: AttemptState, created: float, checkout: str | None = None) -> Attempt:
    return Attempt(n, state, at(created), checkout, f"m-{checkout}" if checkout else None)


def paid(checkout: str, received: float, phone: str = PHONE, amount: int = AMOUNT) -> KeptCallback:
    return KeptCallback(checkout, f"m-{checkout}", phone, amount, at(received))


def decide(
    attempts: list[Attempt], callbacks: list[KeptCallback] | None = None, now: float = 10
) -> Adopt | Wait | PushAgain:
    return resolve(
        attempts,
        callbacks or [],
        phone=PHONE,
        amount_minor=AMOUNT,
        now=at(now),
        prompt_seconds=90,
        match_seconds=300,
    )


def test_a_first_push_goes() -> None:
    assert decide([]) == PushAgain(())
    assert next_attempt([]) == 1


def test_a_recorded_checkout_request_id_is_adopted_not_pushed_again() -> None:
    """The worker died after recording Daraja's answer, before the activity completed."""
    recorded = attempt(1, AttemptState.ACCEPTED, 0, "ws_1")
    assert decide([recorded]) == Adopt(1, "ws_1", "m-ws_1")


def test_the_latest_recorded_push_wins() -> None:
    attempts = [
        attempt(1, AttemptState.ADOPTED, 0, "ws_1"),
        attempt(2, AttemptState.ACCEPTED, 100, "ws_2"),
    ]
    assert decide(attempts, now=200) == Adopt(2, "ws_2", "m-ws_2")


def test_an_unresolved_push_adopts_the_callback_of_its_phone_and_amount() -> None:
    sending = attempt(1, AttemptState.SENDING, 0)
    assert decide([sending], [paid("ws_cb", 20)], now=30) == Adopt(1, "ws_cb", "m-ws_cb")


def test_a_callback_of_another_phone_amount_or_time_is_not_adopted() -> None:
    sending = attempt(1, AttemptState.UNKNOWN, 100)
    others = [
        paid("ws_phone", 120, phone="254700000001"),
        paid("ws_amount", 120, amount=AMOUNT + 100),
        paid("ws_before", 99),  # came before the push was written
        paid("ws_late", 401),  # beyond the match window
    ]
    assert decide([sending], others, now=130) == Wait(1, 60)


def test_a_young_unresolved_push_is_awaited_its_prompt_may_be_on_the_phone() -> None:
    assert decide([attempt(1, AttemptState.SENDING, 0)], now=32) == Wait(1, 58)
    assert decide([attempt(1, AttemptState.UNKNOWN, 0)], now=89.5) == Wait(1, 0.5)


def test_an_expired_unresolved_push_lets_the_customer_be_prompted_again() -> None:
    attempts = [attempt(1, AttemptState.SENDING, 0), attempt(2, AttemptState.UNKNOWN, 10)]
    assert decide(attempts, now=100) == PushAgain((1, 2))
    assert next_attempt(attempts) == 3


def test_pushes_nobody_saw_do_not_hold_the_next_one_back() -> None:
    attempts = [
        attempt(1, AttemptState.NOT_SENT, 0),
        attempt(2, AttemptState.EXPIRED, 0),
    ]
    assert decide(attempts, now=1) == PushAgain(())


def test_a_newer_unresolved_push_is_awaited_after_an_expired_one() -> None:
    attempts = [attempt(1, AttemptState.EXPIRED, 0), attempt(2, AttemptState.SENDING, 95)]
    assert decide(attempts, now=100) == Wait(2, 85)
    # its callback, not one older than it, is adopted
    assert decide(attempts, [paid("ws_old", 50), paid("ws_new", 99)], now=100) == Adopt(
        2, "ws_new", "m-ws_new"
    )
