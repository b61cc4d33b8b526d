"""Circuit breakers per provider: which provider an activity calls, which failures count, and
which activity task queues a breaker holds when it opens.

A breaker counts only the provider's *unavailable* errors (5xx, refused connections, timeouts,
as each provider client maps them): a declined card or a rejected request is an answer, the
provider is up. Each provider's queues are its own (``domain.queues``), so an open breaker never
holds another provider's queue. The ``notify`` queue carries webhooks as well as email, but only
``notify.email`` calls SMTP: only its outcomes count for ``smtp``.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

from domain.queues import ActivityQueue, RateLimitKey


class Provider(StrEnum):
    DARAJA = "daraja"
    STRIPE = "stripe"
    EVM = "evm"
    SOLANA = "solana"
    SMTP = "smtp"


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    #: the probe answered: the queue is released, the next call decides
    HALF_OPEN = "half_open"


class BreakerGauge(IntEnum):
    """The value of ``circuit_breaker_state{provider}``."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


GAUGE = {
    BreakerState.CLOSED: BreakerGauge.CLOSED,
    BreakerState.OPEN: BreakerGauge.OPEN,
    BreakerState.HALF_OPEN: BreakerGauge.HALF_OPEN,
}

#: the activity task queues a provider's breaker holds at 0 while open (EVM writes: the treasury
#: transactions of evm-write and the registry anchors of credentials)
PROVIDER_QUEUES: dict[Provider, tuple[ActivityQueue, ...]] = {
    Provider.DARAJA: (ActivityQueue.MPESA,),
    Provider.STRIPE: (ActivityQueue.STRIPE,),
    Provider.EVM: (ActivityQueue.EVM_WRITE, ActivityQueue.CREDENTIALS),
    Provider.SOLANA: (ActivityQueue.SOLANA,),
    Provider.SMTP: (ActivityQueue.NOTIFY,),
}

#: the rate-limit key (``/api/v1/rate-limits/...``) whose task queue each breaker holds
PROVIDER_KEYS: dict[Provider, RateLimitKey] = {
    Provider.DARAJA: RateLimitKey.MPESA,
    Provider.STRIPE: RateLimitKey.STRIPE,
    Provider.EVM: RateLimitKey.EVM_WRITE,
    Provider.SOLANA: RateLimitKey.SOLANA,
    Provider.SMTP: RateLimitKey.SMTP,
}

#: the error type names (``domain.errors``) that mean the provider did not answer
UNAVAILABLE: dict[Provider, frozenset[str]] = {
    Provider.DARAJA: frozenset({"DarajaUnavailable", "DarajaPushUnknown"}),
    Provider.STRIPE: frozenset({"StripeUnavailable"}),
    Provider.EVM: frozenset({"EvmUnavailable"}),
    Provider.SOLANA: frozenset({"SolanaUnavailable"}),
    Provider.SMTP: frozenset({"EmailUnavailable"}),
}

#: activities on a provider's queue that do not call it
_NOT_CALLING: dict[ActivityQueue, frozenset[str]] = {
    ActivityQueue.NOTIFY: frozenset({"notify.webhook", "notify.record"}),
}


def holder(provider: Provider) -> str:
    """The holder name of an open breaker on its queues (beside ``queue:<kind>``,
    ``emergency-stop``)."""
    return f"breaker:{provider.value}"


def provider_for(queue: ActivityQueue, activity_type: str) -> Provider | None:
    """The provider an activity of ``activity_type`` on ``queue`` calls, if one has a breaker."""
    if activity_type in _NOT_CALLING.get(queue, frozenset()):
        return None
    for provider, queues in PROVIDER_QUEUES.items():
        if queue in queues:
            return provider
    return None


def is_unavailable(provider: Provider, error: BaseException) -> bool:
    """The error (or one it was raised from) says the provider did not answer."""
    names = UNAVAILABLE[provider]
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if any(cls.__name__ in names for cls in type(current).__mro__):
            return True
        current = current.__cause__ or current.__context__
    return False
