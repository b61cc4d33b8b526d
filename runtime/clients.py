"""Provider clients built from settings, for the processes that need the same one (the worker's
activities and the API's inline verification fallback)."""

from __future__ import annotations

from providers.ipfs import IpfsGateway
from runtime.settings import Settings


def ipfs_gateway(settings: Settings) -> IpfsGateway:
    return IpfsGateway(
        settings.ipfs_gateway_url,
        timeout_seconds=settings.ipfs_timeout_seconds,
        max_bytes=settings.ipfs_max_manifest_bytes,
    )
