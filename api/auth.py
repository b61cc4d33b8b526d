"""JWT bearer auth: ``sub``, ``tenant`` and ``roles`` claims, HS256 secret or RS256 public key.

For local use, print a token signed with the configured key:

    python -m api.auth token --sub alice --tenant t1 --roles user
"""

from __future__ import annotations

import argparse
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Any

import jwt
from pydantic import BaseModel

from domain.errors import Unauthorized
from runtime.settings import Settings, get_settings


class Role(StrEnum):
    #: acts on their own operations
    USER = "user"
    #: runs a tenant's events, refunds and transfers
    VENUE_ADMIN = "venue_admin"
    #: runs one tenant: its jobs, dead letters, alerts, webhook endpoints
    ADMIN = "admin"
    #: runs the deployment: providers, shared queues, caches, the platform's alerts, readiness
    #: details, /metrics; reads every tenant's operations (but acts on none in a tenant's name),
    #: and reads decrypted payloads through the codec server
    PLATFORM_ADMIN = "platform_admin"


class Principal(BaseModel):
    """The authenticated caller."""

    subject: str
    tenant: str
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        """An admin of the caller's own tenant."""
        return Role.ADMIN in self.roles

    @property
    def is_platform_admin(self) -> bool:
        return Role.PLATFORM_ADMIN in self.roles

    @property
    def sees_every_tenant(self) -> bool:
        """Reads are not limited to the caller's tenant (the platform's operators only)."""
        return self.is_platform_admin

    def in_own_tenant(self) -> Principal:
        """The caller as they act on jobs: within their own tenant only, whatever they may read
        (a platform_admin who is also a tenant's admin changes that tenant's jobs, no other)."""
        if not self.is_platform_admin:
            return self
        return self.model_copy(update={"roles": self.roles - {Role.PLATFORM_ADMIN}})


def _verification_key(settings: Settings) -> str:
    if settings.jwt_algorithm == "RS256":
        if not settings.jwt_public_key_path:
            raise Unauthorized("server has no JWT public key configured")
        return Path(settings.jwt_public_key_path).read_text()
    return settings.jwt_secret.get_secret_value()


def _signing_key(settings: Settings) -> str:
    if settings.jwt_algorithm == "RS256":
        if not settings.jwt_private_key_path:
            raise SystemExit("JWT_ALGORITHM=RS256: set JWT_PRIVATE_KEY_PATH to sign tokens")
        return Path(settings.jwt_private_key_path).read_text()
    return settings.jwt_secret.get_secret_value()


def decode_token(token: str, settings: Settings) -> Principal:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            _verification_key(settings),
            algorithms=[settings.jwt_algorithm],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=settings.jwt_leeway_seconds,
            options={
                "require": [
                    "sub",
                    "exp",
                    *(["iss"] if settings.jwt_issuer else []),
                    *(["aud"] if settings.jwt_audience else []),
                ]
            },
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("token expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"invalid token: {exc}") from exc
    tenant = claims.get("tenant")
    if not isinstance(tenant, str) or not tenant:
        raise Unauthorized("token has no tenant claim")
    if tenant.strip().lower() in {t.lower() for t in settings.reserved_tenants}:
        # the platform's own workflows and alert endpoints live under these names
        raise Unauthorized(f"tenant {tenant!r} is reserved for the platform")
    roles = claims.get("roles", [])
    if isinstance(roles, str):
        roles = roles.split()
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise Unauthorized("roles claim must be a list of strings")
    known = {r.value for r in Role}
    return Principal(
        subject=str(claims["sub"]), tenant=tenant, roles=frozenset(r for r in roles if r in known)
    )


def issue_token(
    settings: Settings,
    *,
    subject: str,
    tenant: str,
    roles: list[str],
    ttl_seconds: int | None = None,
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "tenant": tenant,
        "roles": roles,
        "iat": now,
        "exp": now + (ttl_seconds or settings.jwt_token_ttl_seconds),
    }
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, _signing_key(settings), algorithm=settings.jwt_algorithm)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.auth")
    sub = parser.add_subparsers(dest="command", required=True)
    token = sub.add_parser("token", help="print a bearer token signed with the configured key")
    token.add_argument("--sub", required=True, help="the caller's subject (user id)")
    token.add_argument("--tenant", required=True)
    token.add_argument(
        "--roles", default="user", help="comma-separated: user,venue_admin,admin,platform_admin"
    )
    token.add_argument("--ttl", type=int, default=None, help="lifetime in seconds")
    args = parser.parse_args(argv)
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    unknown = sorted(set(roles) - {r.value for r in Role})
    if unknown:
        parser.error(f"unknown role(s) {unknown}")
    print(
        issue_token(
            get_settings(), subject=args.sub, tenant=args.tenant, roles=roles, ttl_seconds=args.ttl
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
