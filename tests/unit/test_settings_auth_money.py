"""Settings refuse placeholders in production; JWTs round-trip and fail clearly; money is exact."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import jwt
import pytest
from pydantic import ValidationError
from solders.keypair import Keypair

from api.auth import decode_token, issue_token
from api.auth import main as auth_main
from domain.errors import Unauthorized
from domain.money import Currency, format_minor, to_minor
from runtime.settings import Settings

REAL: dict[str, Any] = {
    "jwt_secret": "a-real-secret-from-the-vault-0123456789",
    "daraja_consumer_key": "real-key",
    "daraja_consumer_secret": "real-secret",
    "daraja_passkey": "real-passkey",
    "mpesa_callback_token": "real-callback-token",
    "database_url": "postgresql+asyncpg://settle@db/settle",
    "treasury_private_key": "0x" + "4f" * 32,
    "daraja_security_credential": "real-encrypted-initiator-credential",
    "mpesa_callback_allowed_ips": ["196.201.214.200", "196.201.214.206"],
    "fx_allow_fixed_rate_in_production": True,
    "deposit_hd_mnemonic": "legal winner thank year wave sausage worth useful legal winner thank yellow",
    "solana_authority_keypair": str(Keypair()),
    "stripe_api_key": "sk_live_a-real-key-from-the-vault",
    "stripe_webhook_secret": "whsec_a-real-secret-from-the-vault",
    "jwt_issuer": "https://auth.settle.example",
    "deposit_xpub": "xpub6EF8jXqFeFEW5bwMU7RpQtHkzE4KJxcqJtvkCjJumzW8CPpacXkb92ek4WzLQXjL93HycJwTPUAcuNxCqFPKKU5m5Z2Vq4nCyh5CyPeBFFr",
    "jwt_audience": "settle-api",
    "payload_codec_keys": "k1=" + "QUJD" * 10 + "QUI=",
}


def settings(**values) -> Settings:
    return Settings(_env_file=None, **values)


def test_production_refuses_placeholder_secrets_naming_them() -> None:
    with pytest.raises(ValidationError) as info:
        settings(settle_env="production", **{**REAL, "daraja_passkey": "dev-only-daraja-passkey"})
    assert "DARAJA_PASSKEY" in str(info.value)
    assert "JWT_SECRET" not in str(info.value)


def test_production_refuses_the_stripe_sandbox_secrets() -> None:
    values = {k: v for k, v in REAL.items() if not k.startswith("stripe_")}
    with pytest.raises(ValidationError) as info:
        settings(settle_env="production", **values)
    assert "STRIPE_API_KEY" in str(info.value)
    assert "STRIPE_WEBHOOK_SECRET" in str(info.value)


def test_production_refuses_the_local_chains_well_known_keys() -> None:
    from runtime.settings.evm import ANVIL_TREASURY_KEY

    with pytest.raises(ValidationError) as info:
        settings(settle_env="production", **{**REAL, "treasury_private_key": ANVIL_TREASURY_KEY})
    assert "TREASURY_PRIVATE_KEY" in str(info.value)


def test_sqlite_is_refused_everywhere() -> None:
    with pytest.raises(ValidationError, match="no longer supports SQLite"):
        settings(database_url="sqlite+aiosqlite:///x.db")


def test_production_refuses_the_embedded_database() -> None:
    real = {k: v for k, v in REAL.items() if k != "database_url"}
    with pytest.raises(ValidationError, match="DATABASE_URL"):
        settings(settle_env="production", **real)


def test_production_with_real_values_starts() -> None:
    assert settings(settle_env="production", **REAL).settle_env == "production"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"jwt_secret": "short-but-not-a-placeholder"}, "at least 32 bytes"),
        ({"jwt_issuer": None}, "JWT_ISSUER and JWT_AUDIENCE"),
        ({"jwt_audience": ""}, "JWT_ISSUER and JWT_AUDIENCE"),
        ({"deposit_xpub": None}, "DEPOSIT_XPUB"),
    ],
)
def test_production_needs_a_long_jwt_secret_an_issuer_an_audience_and_an_xpub(
    change: dict[str, str | None], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        settings(settle_env="production", **{**REAL, **change})


def test_tokens_without_the_configured_issuer_or_audience_are_refused() -> None:
    s = settings(settle_env="production", **REAL)
    good = issue_token(s, subject="a", tenant="t", roles=["user"])
    assert decode_token(good, s).subject == "a"
    for drop in ("iss", "aud"):
        claims = jwt.decode(good, options={"verify_signature": False})
        del claims[drop]
        token = jwt.encode(claims, str(REAL["jwt_secret"]), algorithm="HS256")
        with pytest.raises(Unauthorized, match=drop):
            decode_token(token, s)
    foreign = jwt.encode(
        {**jwt.decode(good, options={"verify_signature": False}), "aud": "another-api"},
        str(REAL["jwt_secret"]),
        algorithm="HS256",
    )
    with pytest.raises(Unauthorized, match=r"(?i)audience"):
        decode_token(foreign, s)


def test_local_accepts_embedded_defaults() -> None:
    local = settings()
    assert local.uses_embedded_database
    assert local.database_url == "postgresql+asyncpg://postgres@127.0.0.1:5488/settle"
    assert not settings(database_url="postgresql+asyncpg://u@db/settle").uses_embedded_database
    assert local.callback_base_url == "http://127.0.0.1:8000"


def test_env_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DARAJA_BASE_URL", "https://api.safaricom.co.ke")
    monkeypatch.setenv("MPESA_CALLBACK_ALLOWED_IPS", '["196.201.214.0/24"]')
    s = settings()
    assert s.daraja_base_url == "https://api.safaricom.co.ke"
    assert s.mpesa_callback_allowed_ips == ["196.201.214.0/24"]


def test_token_round_trip() -> None:
    s = settings(jwt_secret="x" * 40)
    principal = decode_token(
        issue_token(s, subject="alice", tenant="t1", roles=["user", "admin"]), s
    )
    assert (principal.subject, principal.tenant) == ("alice", "t1")
    assert principal.is_admin


@pytest.mark.parametrize("tenant", ["system", "settle-ops", "SYSTEM", "platform"])
def test_tenant_names_of_the_platform_are_refused_in_tokens(tenant: str) -> None:
    s = settings(jwt_secret="x" * 40)
    token = issue_token(s, subject="mallory", tenant=tenant, roles=["admin", "platform_admin"])
    with pytest.raises(Unauthorized, match="reserved"):
        decode_token(token, s)


def test_platform_admin_reads_every_tenant_and_acts_in_its_own() -> None:
    s = settings(jwt_secret="x" * 40)
    both = decode_token(
        issue_token(s, subject="ops", tenant="t9", roles=["admin", "platform_admin"]), s
    )
    assert both.sees_every_tenant and both.is_admin
    acting = both.in_own_tenant()
    assert not acting.sees_every_tenant and acting.is_admin and acting.tenant == "t9"
    admin = decode_token(issue_token(s, subject="a", tenant="t2", roles=["admin"]), s)
    assert not admin.sees_every_tenant and not admin.is_platform_admin


@pytest.mark.parametrize(
    ("claims", "expires_in", "message"),
    [
        ({"sub": "a", "tenant": "t"}, -3600, "expired"),
        ({"sub": "a"}, 60, "tenant"),
        ({"tenant": "t"}, 60, "sub"),
        ({"sub": "a", "tenant": "t", "roles": [1]}, 60, "roles"),
    ],
)
def test_bad_tokens_are_unauthorized(claims: dict, expires_in: int, message: str) -> None:
    s = settings(jwt_secret="x" * 40)
    token = jwt.encode(
        {**claims, "exp": int(time.time()) + expires_in}, "x" * 40, algorithm="HS256"
    )
    with pytest.raises(Unauthorized, match=message):
        decode_token(token, s)


def test_token_signed_with_another_key_is_refused() -> None:
    s = settings(jwt_secret="x" * 40)
    forged = jwt.encode(
        {"sub": "a", "tenant": "t", "exp": int(time.time()) + 60}, "y" * 40, algorithm="HS256"
    )
    with pytest.raises(Unauthorized, match="invalid token"):
        decode_token(forged, s)


def test_rs256_tokens(tmp_path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = tmp_path / "private.pem"
    public = tmp_path / "public.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    s = settings(
        jwt_algorithm="RS256", jwt_public_key_path=str(public), jwt_private_key_path=str(private)
    )
    assert decode_token(
        issue_token(s, subject="v", tenant="t", roles=["venue_admin"]), s
    ).roles == {"venue_admin"}


def test_token_command_prints_a_valid_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JWT_SECRET", "z" * 40)
    from runtime.settings import get_settings

    get_settings.cache_clear()
    try:
        assert auth_main(["token", "--sub", "alice", "--tenant", "t1", "--roles", "user"]) == 0
        token = capsys.readouterr().out.strip()
        assert decode_token(token, settings(jwt_secret="z" * 40)).subject == "alice"
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        (150, Currency.KES, 15000),
        ("25.50", Currency.USDC, 25_500_000),
        (Decimal("0.000001"), Currency.USDC, 1),
    ],
)
def test_to_minor(amount, currency, minor) -> None:
    assert to_minor(amount, currency) == minor


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        ("1.001", Currency.KES),
        ("0.0000001", Currency.USDC),
        ("abc", Currency.KES),
        ("NaN", Currency.KES),
    ],
)
def test_to_minor_refuses_excess_precision_and_garbage(amount, currency) -> None:
    with pytest.raises(ValueError):
        to_minor(amount, currency)


def test_format_minor() -> None:
    assert format_minor(15000, Currency.KES) == "150.00"
    assert format_minor(25_500_000, Currency.USDC) == "25.500000"
