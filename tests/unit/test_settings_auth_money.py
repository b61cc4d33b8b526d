"""Settings refuse placeholders in production; JWTs round-trip and fail clearly; money is exact."""

from __future__ import annotations

import time
from decimal import Decimal

import jwt
import pytest
from pydantic import ValidationError
from solders.keypair import Keypair

from api.auth import decode_token, issue_token
from api.auth import main as auth_main
from domain.errors import Unauthorized
from domain.money import Currency, format_minor, to_minor
from runtime.settings import Settings

REAL = {
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


def test_production_refuses_sqlite() -> None:
    with pytest.raises(ValidationError, match="PostgreSQL"):
        settings(settle_env="production", **{**REAL, "database_url": "sqlite+aiosqlite:///x.db"})


def test_production_with_real_values_starts() -> None:
    assert settings(settle_env="production", **REAL).settle_env == "production"


def test_local_accepts_embedded_defaults() -> None:
    local = settings()
    assert local.database_url.startswith("sqlite")
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
