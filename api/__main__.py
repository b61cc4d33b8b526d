"""``python -m api``: serve the API with uvicorn on API_HOST:API_PORT, and ``/metrics`` alone on
METRICS_BIND when set (an internal listener Prometheus scrapes without a token).

Access logs are off: the Daraja callback URL carries a secret token in its path. Proxy headers
are off too: uvicorn would otherwise take X-Forwarded-For from any peer in FORWARDED_ALLOW_IPS
(127.0.0.1 by default); which proxy may name the client is TRUSTED_PROXY_IPS, read by the routes
that judge a caller by its address (the M-Pesa callbacks).
"""

from __future__ import annotations

import socket

import uvicorn

from api.metrics import parse_bind
from runtime.interpreter import restore_recursion_limit
from runtime.settings import get_settings


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, reuse_port=False)
    sock.set_inheritable(True)
    return sock


def main() -> None:
    settings = get_settings()
    config = uvicorn.Config(
        "api.app:create_app",
        factory=True,
        access_log=False,
        proxy_headers=False,
        log_level=settings.log_level.lower(),
    )
    sockets = [bind_socket(settings.api_host, settings.api_port)]
    if settings.metrics_bind:
        sockets.append(bind_socket(*parse_bind(settings.metrics_bind)))
    restore_recursion_limit()
    uvicorn.Server(config).run(sockets=sockets)


if __name__ == "__main__":
    main()
