"""The real Daraja client against the sandbox over HTTP: the sandbox checks what Daraja checks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from domain.errors import DarajaAuthError, DarajaRejected, DarajaUnavailable
from providers.daraja import DarajaClient
from sandbox.daraja import create_daraja_app
from sandbox.serve import RunningServer, serve


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningServer]:
    app = create_daraja_app(
        consumer_key="k",
        consumer_secret="s",
        shortcode="174379",
        passkey="p",
        callback_delay_seconds=0.2,
    )
    server = await serve(app)
    yield server
    await server.stop()


def client(url: str, *, consumer_secret: str = "s", passkey: str = "p") -> DarajaClient:
    return DarajaClient(
        base_url=url,
        consumer_key="k",
        consumer_secret=consumer_secret,
        shortcode="174379",
        passkey=passkey,
    )


async def push(c: DarajaClient, phone: str = "254708374149"):
    return await c.stk_push(
        phone=phone,
        amount_kes=10,
        callback_url="http://127.0.0.1:9/cb",
        account_reference="Settle",
        description="t",
    )


async def test_push_then_query_pending_then_final(sandbox: RunningServer) -> None:
    c = client(sandbox.url)
    result = await push(c, "254700001032")
    first = await c.stk_query(result.checkout_request_id)
    assert first.pending
    await asyncio.sleep(0.3)
    final = await c.stk_query(result.checkout_request_id)
    assert (final.pending, final.result_code) == (False, 1032)
    assert c.tokens_fetched == 1
    await c.aclose()


async def test_wrong_passkey_is_refused(sandbox: RunningServer) -> None:
    c = client(sandbox.url, passkey="wrong")
    with pytest.raises(DarajaUnavailable) as info:  # Daraja answers 500 "Wrong credentials"
        await push(c)
    assert "Wrong credentials" in str(info.value)
    await c.aclose()


async def test_wrong_consumer_secret_is_an_auth_error(sandbox: RunningServer) -> None:
    c = client(sandbox.url, consumer_secret="nope")
    with pytest.raises(DarajaAuthError):
        await push(c)
    await c.aclose()


async def test_invalid_phone_is_rejected(sandbox: RunningServer) -> None:
    c = client(sandbox.url)
    with pytest.raises(DarajaRejected):
        await push(c, "0712345678")
    await c.aclose()


async def test_unknown_checkout_request_is_rejected(sandbox: RunningServer) -> None:
    c = client(sandbox.url)
    with pytest.raises(DarajaRejected):
        await c.stk_query("ws_CO_unknown")
    await c.aclose()
