"""``python -m api``: serve the API with uvicorn on API_HOST:API_PORT.

Access logs are off: the Daraja callback URL carries a secret token in its path. Proxy headers
are off too: uvicorn would otherwise take X-Forwarded-For from any peer in FORWARDED_ALLOW_IPS
(127.0.0.1 by default); which proxy may name the client is TRUSTED_PROXY_IPS, read by the routes
that judge a caller by its address (the M-Pesa callbacks).
"""

from __future__ import annotations

import uvicorn

from runtime.settings import get_settings

if __name__ == "__main__":
    settings = get_settings()
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        access_log=False,
        proxy_headers=False,
        log_level=settings.log_level.lower(),
    )
