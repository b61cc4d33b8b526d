"""``python -m api``: serve the API with uvicorn on API_HOST:API_PORT.

Access logs are off: the Daraja callback URL carries a secret token in its path.
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
        log_level=settings.log_level.lower(),
    )
