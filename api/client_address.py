"""Who is calling: the peer's address, or the client a trusted proxy names.

uvicorn runs with proxy headers off (``api/__main__.py``), so ``request.client`` is always the
TCP peer. Only a peer inside ``TRUSTED_PROXY_IPS`` may name the client in ``X-Forwarded-For``;
the rightmost address not itself a trusted proxy is the client (proxies append, so what a
caller wrote on the left is not believed).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from fastapi import Request


def in_networks(host: str | None, networks: Sequence[str]) -> bool:
    if host is None:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(cidr, strict=False) for cidr in networks)


def client_address(request: Request, trusted_proxies: Sequence[str]) -> str | None:
    peer = request.client.host if request.client else None
    if not trusted_proxies or not in_networks(peer, trusted_proxies):
        return peer
    hops = [
        hop.strip()
        for header in request.headers.getlist("x-forwarded-for")
        for hop in header.split(",")
        if hop.strip()
    ]
    for hop in reversed(hops):
        if not in_networks(hop, trusted_proxies):
            return hop
    return hops[0] if hops else peer
