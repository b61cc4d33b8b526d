"""Outbound webhooks cannot be aimed inside (issue 13 §5).

Before: the target was resolved to check it, then httpx resolved it again to connect, so a DNS
answer that changed in between (rebinding) reached 127.0.0.1; 100.64.0.0/10 and IPv4 inside
IPv6 passed the check; the whole answer was read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request

from domain.errors import WebhookDeliveryFailed, WebhookTargetRefused
from providers.webhooks import (
    RESPONSE_BODY_CAP,
    IPAddress,
    WebhookSender,
    check_target,
    is_internal,
)
from sandbox.serve import serve

PUBLIC = ipaddress.ip_address("93.184.215.14")
LOOPBACK = ipaddress.ip_address("127.0.0.1")


class RebindingResolver:
    """Answers with the next address on each call, like a DNS server with a TTL of 0."""

    def __init__(self, *answers: IPAddress) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def __call__(self, host: str) -> list[IPAddress]:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return [answer]


class Recorder:
    def __init__(self, status: int = 204, body: bytes = b"", headers: dict[str, str] | None = None):
        self.requests: list[httpx.Request] = []
        self.status, self.body, self.headers = status, body, headers or {}
        self.body_chunks_read = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)

        async def stream() -> AsyncIterator[bytes]:
            for _ in range(1000):  # 1000 x 4 KiB: far more than the cap
                self.body_chunks_read += 1
                yield b"x" * 4096

        if self.body == b"stream":
            return httpx.Response(self.status, content=stream(), headers=self.headers)
        return httpx.Response(self.status, content=self.body, headers=self.headers)


async def deliver(sender: WebhookSender, url: str) -> int:
    return await sender.send(
        url=url,
        secret="whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        message_id="msg-1",
        event_type="ticket.minted",
        data={"ticket": "t-1"},
    )


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "100.127.255.254",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "0.0.0.0",
        "::1",
        "::",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",
        "2002:7f00:1::",
    ],
)
def test_special_addresses_are_internal(address: str) -> None:
    assert is_internal(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_not(address: str) -> None:
    assert not is_internal(ipaddress.ip_address(address))


async def test_a_rebinding_answer_cannot_reach_loopback() -> None:
    """Public at the check, loopback right after: the request goes to the checked address."""
    resolver = RebindingResolver(PUBLIC, LOOPBACK)
    recorder = Recorder()
    sender = WebhookSender(resolver=resolver, transport=httpx.MockTransport(recorder.handler))
    assert await deliver(sender, "https://hooks.venue.example/settle?x=1") == 204
    assert resolver.calls == 1
    (request,) = recorder.requests
    assert request.url.host == str(PUBLIC) and request.url.path == "/settle"
    assert request.headers["host"] == "hooks.venue.example"
    assert request.extensions["sni_hostname"] == "hooks.venue.example"
    await sender.aclose()


async def test_an_internal_first_answer_is_refused_and_nothing_is_sent() -> None:
    resolver = RebindingResolver(LOOPBACK, PUBLIC)
    recorder = Recorder()
    sender = WebhookSender(resolver=resolver, transport=httpx.MockTransport(recorder.handler))
    with pytest.raises(WebhookTargetRefused, match=r"127\.0\.0\.1"):
        await deliver(sender, "http://hooks.venue.example/settle")
    assert recorder.requests == []
    for url in ("http://100.64.0.9/x", "http://[::ffff:10.0.0.1]/x", "ftp://hooks.example/x"):
        with pytest.raises(WebhookTargetRefused):
            await deliver(sender, url)
    assert recorder.requests == []
    await sender.aclose()


async def test_one_internal_address_among_several_refuses_the_name() -> None:
    async def both(host: str) -> list[IPAddress]:
        return [PUBLIC, ipaddress.ip_address("10.0.0.7")]

    with pytest.raises(WebhookTargetRefused, match=r"10\.0\.0\.7"):
        await check_target("https://mixed.example/", [], both)


async def test_redirects_are_not_followed() -> None:
    recorder = Recorder(status=302, headers={"location": "http://127.0.0.1:8000/api/v1/jobs"})
    sender = WebhookSender(
        resolver=RebindingResolver(PUBLIC), transport=httpx.MockTransport(recorder.handler)
    )
    with pytest.raises(WebhookDeliveryFailed, match="302"):
        await deliver(sender, "https://hooks.venue.example/settle")
    assert len(recorder.requests) == 1
    await sender.aclose()


async def test_the_answer_is_read_up_to_a_small_cap() -> None:
    recorder = Recorder(status=200, body=b"stream")
    sender = WebhookSender(
        resolver=RebindingResolver(PUBLIC), transport=httpx.MockTransport(recorder.handler)
    )
    assert await deliver(sender, "https://hooks.venue.example/settle") == 200
    assert recorder.body_chunks_read * 4096 <= RESPONSE_BODY_CAP + 4096
    await sender.aclose()


async def test_an_allow_listed_name_is_delivered_to_the_checked_address_over_a_socket() -> None:
    """The sandbox and the tests allow-list 127.0.0.0/8: a real receiver gets the request,
    with the name it was registered under in Host."""
    seen: list[str] = []
    receiver = FastAPI()

    @receiver.post("/hook")
    async def hook(request: Request) -> dict[str, bool]:
        seen.append(request.headers["host"])
        return {"ok": True}

    server = await serve(receiver)
    resolver = RebindingResolver(LOOPBACK, PUBLIC)
    sender = WebhookSender(allowed_networks=["127.0.0.0/8"], resolver=resolver)
    try:
        url = f"http://receiver.test:{server.port}/hook"
        assert await deliver(sender, url) == 200
        assert seen == [f"receiver.test:{server.port}"] and resolver.calls == 1
    finally:
        await sender.aclose()
        await server.stop()
