"""Outbound webhooks signed per the Standard Webhooks spec (``standardwebhooks``).

Headers ``webhook-id`` (stable per message: receivers deduplicate on it), ``webhook-timestamp`` and
``webhook-signature`` (``v1,<base64 HMAC-SHA256>``). Targets that resolve to private, loopback,
link-local or otherwise internal addresses are refused unless allow-listed in settings (SSRF).
A 410 answer means the endpoint is gone: the caller disables it. Retrying is the caller's
schedule (Temporal's retry policy), never a loop in here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from standardwebhooks.webhooks import Webhook

from domain.errors import WebhookDeliveryFailed, WebhookEndpointGone, WebhookTargetRefused


def _internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


async def resolve(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise WebhookDeliveryFailed(f"cannot resolve {host}: {exc}") from exc
    return [ipaddress.ip_address(info[4][0]) for info in infos]


async def check_target(url: str, allowed_networks: list[str]) -> None:
    """Refuse URLs that are not http(s) or that reach internal addresses outside the allow-list."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookTargetRefused(f"webhook URL must be http(s) with a host: {url!r}")
    networks = [ipaddress.ip_network(n, strict=False) for n in allowed_networks]
    for address in await resolve(parts.hostname):
        if _internal(address) and not any(address in network for network in networks):
            raise WebhookTargetRefused(
                f"{parts.hostname} resolves to {address}, "
                "an internal address that is not allow-listed"
            )


class WebhookSender:
    def __init__(
        self, *, timeout_seconds: float = 10.0, allowed_networks: list[str] | None = None
    ) -> None:
        self._http = httpx.AsyncClient(timeout=timeout_seconds, follow_redirects=False)
        self._allowed = allowed_networks or []

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(
        self, *, url: str, secret: str, message_id: str, event_type: str, data: dict[str, Any]
    ) -> int:
        """Deliver one signed message; returns the HTTP status of a 2xx answer."""
        await check_target(url, self._allowed)
        payload = json.dumps(
            {"type": event_type, "timestamp": datetime.now(UTC).isoformat(), "data": data}
        )
        sent_at = datetime.now(UTC)
        signature = Webhook(secret).sign(message_id, sent_at, payload)
        headers = {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": signature,
        }
        try:
            response = await self._http.post(url, content=payload, headers=headers)
        except httpx.HTTPError as exc:
            raise WebhookDeliveryFailed(f"{url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code == 410:
            raise WebhookEndpointGone(f"{url} answered 410 Gone")
        if not 200 <= response.status_code < 300:
            raise WebhookDeliveryFailed(f"{url} answered {response.status_code}")
        return response.status_code
