"""An IPFS HTTP gateway client (path gateway: ``<gateway>/ipfs/<cid>/<path>``) with Kubo's
``/api/v0/add`` for publishing.

A gateway is someone else's server, so nothing it sends is trusted: a body is read as a stream
and dropped once it passes the size limit (a lying or missing ``Content-Length`` changes
nothing), the whole request has one deadline, and bytes fetched for a raw-codec CID must hash to
that CID. Errors map onto the IPFS family in ``domain.errors``: 404 and other refusals are
permanent, 5xx, 429, timeouts and connection failures are worth retrying. Knows nothing of
Temporal.
"""

from __future__ import annotations

import asyncio
import json

import httpx

from domain.content import cid_matches, parse_ipfs_uri
from domain.errors import (
    IpfsContentMismatch,
    IpfsError,
    IpfsNotFound,
    IpfsTooLarge,
    IpfsUnavailable,
)

#: statuses a gateway answers while overloaded or restarting: asking again later may work
RETRYABLE_STATUSES = {408, 425, 429}


class IpfsGateway:
    """One instance per process; safe to share between concurrent activities."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_seconds: float,
        max_bytes: int,
        api_url: str | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_url = (api_url or base_url).rstrip("/")
        self.max_bytes = max_bytes
        self._timeout = timeout_seconds
        self._http = http or httpx.AsyncClient(timeout=timeout_seconds, follow_redirects=True)
        self._owns_http = http is None

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    def url_for(self, uri: str) -> str:
        """The gateway URL of ``ipfs://<cid>[/path]`` (ValueError for anything else)."""
        cid, path = parse_ipfs_uri(uri)
        return f"{self.base_url}/ipfs/{cid}/{path}" if path else f"{self.base_url}/ipfs/{cid}"

    async def fetch(self, uri: str, *, max_bytes: int | None = None) -> bytes:
        """The bytes ``uri`` names, at most ``max_bytes`` (the instance's limit by default)."""
        cid, path = parse_ipfs_uri(uri)
        url = self.url_for(uri)
        limit = self.max_bytes if max_bytes is None else max_bytes
        try:
            async with asyncio.timeout(self._timeout):
                body = await self._read_limited(uri, url, limit)
        except TimeoutError as exc:
            raise IpfsUnavailable(
                f"{uri}: the gateway did not answer in {self._timeout} s"
            ) from exc
        except httpx.TransportError as exc:  # connect, read and protocol errors
            raise IpfsUnavailable(f"{uri}: {type(exc).__name__}: {exc}") from exc
        if not path and cid_matches(cid, body) is False:
            raise IpfsContentMismatch(
                f"{uri}: the gateway's {len(body)} bytes do not hash to the CID asked for"
            )
        return body

    async def _read_limited(self, uri: str, url: str, limit: int) -> bytes:
        async with self._http.stream("GET", url) as response:
            _raise_for_status(uri, response.status_code)
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > limit:
                raise IpfsTooLarge(f"{uri}: {declared} bytes, above the limit of {limit}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise IpfsTooLarge(f"{uri}: more than {limit} bytes, not read further")
                chunks.append(chunk)
            return b"".join(chunks)

    async def add(self, data: bytes, name: str = "file") -> str:
        """Publish ``data`` through Kubo's RPC API (CIDv1, raw leaves); returns its CID."""
        url = f"{self.api_url}/api/v0/add"
        params = {"cid-version": "1", "raw-leaves": "true"}
        try:
            response = await self._http.post(url, params=params, files={"file": (name, data)})
        except httpx.TimeoutException as exc:
            raise IpfsUnavailable(f"add: the node did not answer in {self._timeout} s") from exc
        except httpx.TransportError as exc:
            raise IpfsUnavailable(f"add: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500 or response.status_code in RETRYABLE_STATUSES:
            raise IpfsUnavailable(f"add: the node answered {response.status_code}")
        if response.status_code != 200:
            raise IpfsError(f"add: the node refused with {response.status_code}: {response.text}")
        try:
            # one JSON object per line; the last names the file (earlier ones may be progress)
            line = [text for text in response.text.splitlines() if text.strip()][-1]
            cid = str(json.loads(line)["Hash"])
        except (IndexError, KeyError, TypeError, ValueError) as exc:
            raise IpfsError(f"add: unexpected answer {response.text[:200]!r}") from exc
        if cid_matches(cid, data) is False:
            raise IpfsContentMismatch(f"add: the node named the data {cid}, which is not its hash")
        return cid


def _raise_for_status(uri: str, status: int) -> None:
    if status == 200:
        return
    if status >= 500 or status in RETRYABLE_STATUSES:
        raise IpfsUnavailable(f"{uri}: gateway {status}")
    if status == 404:
        raise IpfsNotFound(f"{uri}: gateway 404")
    # 400 (a CID the gateway cannot parse), 403/410/451 (blocked content), ...: asking the same
    # gateway again gives the same answer
    raise IpfsNotFound(f"{uri}: gateway {status}, refused")
