"""The abuse limits each operation's start counts against (``store/abuse.py`` counts them).

Only a new operation counts: a repeated request answered from its Idempotency-Key or an existing
row starts nothing and is not limited.
"""

from __future__ import annotations

from api.auth import Principal
from runtime.settings import Settings
from store.abuse import Limit, hashed


def _tenant(settings: Settings, principal: Principal) -> Limit:
    return Limit(
        "ops_per_tenant",
        principal.tenant,
        settings.abuse_operations_per_tenant_per_minute,
        "tenant",
        "operations started by this tenant",
    )


def _user(principal: Principal, name: str, per_minute: int, what: str) -> Limit:
    return Limit(name, f"{principal.tenant}/{principal.subject}", per_minute, "sub", what)


def stk_push(settings: Settings, principal: Principal, phone: str) -> list[Limit]:
    return [
        Limit(
            "stk_per_phone",
            hashed(phone),
            settings.abuse_stk_pushes_per_phone_per_minute,
            "phone",
            "STK pushes to this phone number",
        ),
        _user(
            principal,
            "stk_per_user",
            settings.abuse_stk_pushes_per_user_per_minute,
            "STK pushes asked for by this user",
        ),
        _tenant(settings, principal),
    ]


def verification(settings: Settings, principal: Principal) -> list[Limit]:
    return [
        _user(
            principal,
            "verifications_per_user",
            settings.abuse_verifications_per_user_per_minute,
            "verification jobs submitted by this user",
        ),
        _tenant(settings, principal),
    ]


def anchor_request(settings: Settings, principal: Principal) -> list[Limit]:
    return [
        Limit(
            "anchor_requests_per_tenant",
            principal.tenant,
            settings.abuse_anchor_requests_per_tenant_per_minute,
            "credential_id",
            "credential anchor requests of this tenant",
        ),
        _tenant(settings, principal),
    ]


def ticket_purchase(settings: Settings, principal: Principal) -> list[Limit]:
    return [
        _user(
            principal,
            "purchases_per_user",
            settings.abuse_ticket_purchases_per_user_per_minute,
            "ticket purchases started by this user",
        ),
        _tenant(settings, principal),
    ]


def deposit_intent(settings: Settings, principal: Principal) -> list[Limit]:
    return [_tenant(settings, principal)]
