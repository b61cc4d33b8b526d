"""Credentials are taken out of text in one place (issue 13 §3): URLs with keys, userinfo,
key-like query parameters, bearer tokens, the Daraja callback token, configured secrets."""

from __future__ import annotations

import io
import json
import logging

import httpx
import pytest
import structlog
from fastapi import FastAPI
from temporalio.exceptions import ApplicationError

from api.errors import install_error_handlers
from domain.errors import EvmError
from runtime.interceptors import _redact_exception
from runtime.logging import RedactingFilter, configure_logging, get_logger
from runtime.redact import MASK, redact, register_secret, register_settings
from runtime.settings import Settings

KEY = "aB3dE5fG7hJ9kL1mN3pQ5rS7"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"Client error '401' for url 'https://base-mainnet.g.alchemy.com/v2/{KEY}'", KEY),
        (f"ConnectError: https://mainnet.infura.io/v3/{KEY}/ unreachable", KEY),
        ("GET https://rpc.example/solana?api-key=s3cr3t-value-1 failed", "s3cr3t-value-1"),
        ("https://x.example/rpc?chain=1&access_token=tok-abc-123", "tok-abc-123"),
        ("postgresql+asyncpg://settle:hunter2-pass@db:5432/settle refused", "hunter2-pass"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.sig", "eyJhbGciOiJIUzI1NiJ9"),
        ("Basic dGVzdC1rZXk6dGVzdC1zZWNyZXQ= refused by Daraja", "dGVzdC1rZXk6dGVzdC1zZWNyZXQ="),
        ("POST /api/v1/deposit/mpesa-callback/cb-token-42 answered 403", "cb-token-42"),
    ],
)
def test_credential_shapes_are_masked(text: str, secret: str) -> None:
    cleaned = redact(text)
    assert secret not in cleaned and MASK in cleaned


def test_ordinary_text_is_kept() -> None:
    text = "deposit 3f2a answered 502: insufficient funds for gas * price + value (0x1234abcd)"
    assert redact(text) == text
    assert redact("GET http://127.0.0.1:8000/api/v1/jobs/abc?limit=10") == (
        "GET http://127.0.0.1:8000/api/v1/jobs/abc?limit=10"
    )


def test_configured_secrets_are_masked_wherever_they_appear() -> None:
    settings = Settings(
        _env_file=None,
        daraja_consumer_secret="daraja-secret-that-leaks",
        evm_rpc_url=f"https://rpc.example/v2/{KEY}",
    )
    register_settings(settings)
    assert "daraja-secret-that-leaks" not in redact("oauth refused for daraja-secret-that-leaks")
    # the key alone, quoted outside its URL, is known too
    assert KEY not in redact(f"the provider rejected key {KEY}")
    register_secret("x")  # too short to mask: ordinary text stays readable
    assert redact("x marks the spot") == "x marks the spot"


def test_log_lines_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", json=True)
    try:
        get_logger("test").warning("rpc failed", url=f"https://rpc.example/v2/{KEY}")
        line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
        assert KEY not in line["url"] and MASK in line["url"]
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.addFilter(RedactingFilter())
        logger = logging.getLogger("httpx-test")
        logger.addHandler(handler)
        logger.warning("HTTP Request: POST https://r.example/v3/%s", KEY)
        try:
            raise RuntimeError(f"ConnectError for https://r.example/v3/{KEY}")
        except RuntimeError:
            logger.exception("request failed")
        logger.removeHandler(handler)
        assert KEY not in stream.getvalue() and MASK in stream.getvalue()
        assert "Traceback" in stream.getvalue()
    finally:
        structlog.reset_defaults()


def test_activity_errors_leave_the_worker_redacted() -> None:
    cause = RuntimeError(f"POST https://rpc.example/v2/{KEY} answered 401")
    error = ApplicationError(f"eth_call failed via https://rpc.example/v2/{KEY}", type="EvmError")
    error.__cause__ = cause
    _redact_exception(error)
    assert KEY not in error.message and KEY not in str(cause)


async def test_error_answers_are_redacted() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise EvmError(f"eth_blockNumber: 401 for url 'https://base.example/v2/{KEY}'")

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        response = await http.get("/boom")
    assert response.status_code >= 500
    assert KEY not in response.text and MASK in response.json()["error"]["message"]
