"""Production refuses an open M-Pesa callback and a silent fixed FX rate; the callback's source is
the TCP peer unless a trusted proxy names the client (issue 12, sections 1 and 7)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from starlette.requests import Request

from api.client_address import client_address
from runtime.settings import Settings
from runtime.settings.mpesa import SAFARICOM_CALLBACK_IPS
from tests.unit.test_settings_auth_money import REAL


def production(**overrides: Any) -> Settings:
    return Settings(_env_file=None, settle_env="production", **{**REAL, **overrides})


def test_production_needs_the_callback_allow_list() -> None:
    with pytest.raises(ValidationError, match="MPESA_CALLBACK_ALLOWED_IPS"):
        production(mpesa_callback_allowed_ips=[])


def test_production_refuses_the_fixed_rate_unless_allowed() -> None:
    with pytest.raises(ValidationError, match="FX_ALLOW_FIXED_RATE_IN_PRODUCTION"):
        production(fx_allow_fixed_rate_in_production=False)
    assert production().fx_provider == "fixed"


def test_production_refuses_the_placeholder_security_credential() -> None:
    with pytest.raises(ValidationError, match="DARAJA_SECURITY_CREDENTIAL"):
        production(daraja_security_credential="dev-only-daraja-security-credential")


def test_production_starts_with_safaricoms_published_addresses() -> None:
    settings = production(mpesa_callback_allowed_ips=list(SAFARICOM_CALLBACK_IPS))
    assert settings.mpesa_callback_allowed_ips[0] == "196.201.214.200"


@pytest.mark.parametrize("name", ["mpesa_callback_allowed_ips", "trusted_proxy_ips"])
def test_a_network_that_is_not_one_is_refused_naming_the_setting(name: str) -> None:
    with pytest.raises(ValidationError, match=name):
        Settings(_env_file=None, **{name: ["not-an-ip"]})  # type: ignore[arg-type]


def test_local_and_test_run_without_an_allow_list() -> None:
    assert Settings(_env_file=None).mpesa_callback_allowed_ips == []


def request_from(peer: str, forwarded: str | None = None) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return Request({"type": "http", "client": (peer, 5000), "headers": headers})


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        # no trusted proxy: the header is anyone's words, the peer is the caller
        ("203.0.113.9", "196.201.214.200", [], "203.0.113.9"),
        ("127.0.0.1", "196.201.214.200", [], "127.0.0.1"),
        # a peer that is not a trusted proxy cannot name the client either
        ("203.0.113.9", "196.201.214.200", ["10.0.0.0/8"], "203.0.113.9"),
        # the trusted proxy appended the address it saw; what the caller wrote is to its left
        ("10.0.0.5", "196.201.214.200, 203.0.113.9", ["10.0.0.0/8"], "203.0.113.9"),
        ("10.0.0.5", "196.201.214.200", ["10.0.0.0/8"], "196.201.214.200"),
        # two trusted hops
        ("10.0.0.5", "196.201.214.206, 10.0.0.7", ["10.0.0.0/8"], "196.201.214.206"),
        ("10.0.0.5", None, ["10.0.0.0/8"], "10.0.0.5"),
    ],
)
def test_client_address(
    peer: str, forwarded: str | None, trusted: list[str], expected: str
) -> None:
    assert client_address(request_from(peer, forwarded), trusted) == expected


def test_uvicorn_never_reads_forwarded_headers_itself() -> None:
    from pathlib import Path

    source = (Path(__file__).resolve().parents[2] / "api" / "__main__.py").read_text()
    assert "proxy_headers=False" in source
