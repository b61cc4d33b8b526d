"""Outbound webhooks signed per the Standard Webhooks spec (``standardwebhooks``).

Headers ``webhook-id`` (stable per message: receivers deduplicate on it), ``webhook-timestamp`` and
``webhook-signature`` (``v1,<base64 HMAC-SHA256>``). A 410 answer means the endpoint is gone: the
caller disables it. Retrying is the caller's schedule (Temporal's retry policy), never a loop in
here.

A tenant chooses the URL, so the target is hostile (SSRF):

- the host is resolved once, every address it resolves to is checked, and the request goes to
  the checked address (the ``Host`` header and TLS SNI carry the name): a DNS answer that changes
  between the check and the connection (DNS rebinding) cannot aim the request inside;
- loopback, private, link-local, shared (100.64.0.0/10), multicast, reserved and unspecified
  addresses are refused, IPv6 equivalents too (and IPv4 addresses embedded in IPv6: mapped,
  6to4, NAT64), unless allow-listed (``WEBHOOK_ALLOWED_NETWORKS``);
- redirects are not followed (a 3xx is a failed delivery) and no proxy from the environment is
  used; at most ``RESPONSE_BODY_CAP`` bytes of an answer are read.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from standardwebhooks.webhooks import Webhook

from domain.errors import WebhookDeliveryFailed, WebhookEndpointGone, WebhookTargetRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: ``host -> addresses``; injectable so tests can play a rebinding DNS server
Resolver = Callable[[str], Awaitable[list[IPAddress]]]

#: how much of a receiver's answer is read (only its status matters)
RESPONSE_BODY_CAP = 16 * 1024
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_internal(address: IPAddress) -> bool:
    """Anything but a public unicast address (``is_global`` leaves out 100.64.0.0/10 too)."""
    embedded = _embedded_ipv4(address)
    if embedded is not None and is_internal(embedded):
        return True
    return (
        not address.is_global
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or address.is_loopback
        or address.is_link_local
        or address.is_private
    )


async def system_resolver(host: str) -> list[IPAddress]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise WebhookDeliveryFailed(f"cannot resolve {host}: {exc}") from exc
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


async def resolve(host: str, resolver: Resolver = system_resolver) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        return await resolver(host)


async def check_target(
    url: str, allowed_networks: list[str], resolver: Resolver = system_resolver
) -> IPAddress:
    """Refuse URLs that are not http(s) or that reach internal addresses outside the allow-list;
    the checked address to connect to."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookTargetRefused(f"webhook URL must be http(s) with a host: {url!r}")
    networks = [ipaddress.ip_network(n, strict=False) for n in allowed_networks]
    addresses = await resolve(parts.hostname, resolver)
    if not addresses:
        raise WebhookDeliveryFailed(f"{parts.hostname} resolves to no address")
    for address in addresses:
        if is_internal(address) and not any(address in network for network in networks):
            raise WebhookTargetRefused(
                f"{parts.hostname} resolves to {address}, "
                "an internal address that is not allow-listed"
            )
    return addresses[0]


async def _drain_some(response: httpx.Response) -> None:
    """Read (raw: no decompression) at most RESPONSE_BODY_CAP bytes of the answer."""
    if response.is_stream_consumed:
        return
    read = 0
    async for chunk in response.aiter_raw():
        read += len(chunk)
        if read >= RESPONSE_BODY_CAP:
            break


class WebhookSender:
    def __init__(
        self,
        *,
        timeout_seconds: float = 10.0,
        allowed_networks: list[str] | None = None,
        resolver: Resolver = system_resolver,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            timeout=timeout_seconds, follow_redirects=False, trust_env=False, transport=transport
        )
        self._allowed = allowed_networks or []
        self._resolver = resolver

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(
        self, *, url: str, secret: str, message_id: str, event_type: str, data: dict[str, Any]
    ) -> int:
        """Deliver one signed message; returns the HTTP status of a 2xx answer."""
        address = await check_target(url, self._allowed, self._resolver)
        target = httpx.URL(url)
        payload = json.dumps(
            {"type": event_type, "timestamp": datetime.now(UTC).isoformat(), "data": data}
        )
        sent_at = datetime.now(UTC)
        signature = Webhook(secret).sign(message_id, sent_at, payload)
        headers = {
            "host": target.netloc.decode("ascii"),
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": signature,
        }
        # connect to the address that was checked; the name travels in Host and SNI
        request = self._http.build_request(
            "POST", target.copy_with(host=str(address)), content=payload, headers=headers
        )
        if target.scheme == "https":
            request.extensions["sni_hostname"] = target.host
        try:
            response = await self._http.send(request, stream=True)
            try:
                await _drain_some(response)
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise WebhookDeliveryFailed(f"{url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code == 410:
            raise WebhookEndpointGone(f"{url} answered 410 Gone")
        if not 200 <= response.status_code < 300:
            raise WebhookDeliveryFailed(
                f"{url} answered {response.status_code}", answered=response.status_code
            )
        return response.status_code
