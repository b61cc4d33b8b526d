"""The chaos run's fault-injecting proxy, in front of a real HTTP server and a real SMTP catcher:
what the caller sees and what reaches the provider in each mode."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiosmtplib
import httpx
import pytest
from fastapi import FastAPI

from bench.chaos.proxy import FaultProxy, Mode
from sandbox.serve import RunningServer, serve
from sandbox.smtp import MailCatcher, start_smtp


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[FastAPI, RunningServer]]:
    app = FastAPI()
    app.state.hits = 0

    @app.post("/effect")
    async def effect() -> dict[str, int]:
        app.state.hits += 1
        return {"hits": app.state.hits}

    server = await serve(app)
    yield app, server
    await server.stop()


async def test_each_mode_as_the_caller_and_the_provider_see_it(
    upstream: tuple[FastAPI, RunningServer],
) -> None:
    app, server = upstream
    proxy = FaultProxy("test", "127.0.0.1", server.port)
    await proxy.start()

    async def post(timeout: float = 2) -> httpx.Response:
        # a client of its own per call: a mode change cuts pooled connections on purpose
        async with httpx.AsyncClient(base_url=proxy.url, timeout=timeout) as client:
            return await client.post("/effect")

    try:
        assert (await post()).json() == {"hits": 1}

        proxy.set_mode(Mode.ERROR)  # answered 503 here; the provider never sees it
        answer = await post()
        assert answer.status_code == 503
        assert app.state.hits == 1

        proxy.set_mode(Mode.TIMEOUT)  # never answered
        with pytest.raises(httpx.ReadTimeout):
            await post(timeout=0.5)
        assert app.state.hits == 1

        proxy.set_mode(Mode.DROP)  # done at the provider, the answer lost
        with pytest.raises(httpx.HTTPError):
            await post()
        for _ in range(50):
            if app.state.hits == 2:
                break
            await asyncio.sleep(0.02)
        assert app.state.hits == 2

        proxy.set_mode(Mode.REFUSE)
        with pytest.raises(httpx.HTTPError):
            await post()
        assert app.state.hits == 2

        proxy.set_mode(Mode.PASS)
        assert (await post()).json() == {"hits": 3}
        assert proxy.connections[Mode.DROP] == 1 and proxy.connections[Mode.ERROR] == 1
    finally:
        await proxy.stop()


async def test_smtp_refusing() -> None:
    catcher = MailCatcher()
    smtp = await start_smtp(catcher, "127.0.0.1", 0)
    proxy = FaultProxy("smtp", "127.0.0.1", smtp.sockets[0].getsockname()[1], protocol="smtp")
    await proxy.start()
    message = "From: a@settle.local\r\nTo: b@settle.local\r\nSubject: x\r\n\r\nhello\r\n"
    try:
        await aiosmtplib.send(
            message,
            sender="a@settle.local",
            recipients=["b@settle.local"],
            hostname="127.0.0.1",
            port=proxy.port,
            timeout=5,
        )
        assert len(catcher.messages) == 1
        proxy.set_mode(Mode.ERROR)
        with pytest.raises(aiosmtplib.SMTPException) as refused:
            await aiosmtplib.send(
                message,
                sender="a@settle.local",
                recipients=["b@settle.local"],
                hostname="127.0.0.1",
                port=proxy.port,
                timeout=5,
            )
        assert "421" in str(refused.value) or "Service not available" in str(refused.value)
        assert len(catcher.messages) == 1
    finally:
        await proxy.stop()
        smtp.close()
