"""Bounded input: every request body has a size cap and JSON bodies a nesting cap, both enforced
while the body streams in, before anything parses it.

A pure ASGI middleware (outermost of the app's own), so it sees every body before FastAPI, the
multipart parser or a webhook route reads it, chunked bodies included:

- a declared ``Content-Length`` above the cap is answered 413 without reading a byte;
- otherwise ``receive`` is wrapped: past the cap, or past the nesting depth, it raises, and
  whatever the app was doing with the body stops there (a multipart upload stops being written).
  The answer is 413 ``payload_too_large`` or 400 ``json_too_deep``, in place of whatever the
  app made of the broken-off body.

The depth is counted on every body but multipart and URL-encoded forms: routes that read raw
bytes parse them as JSON too, and so does FastAPI when no content type is given.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyRefused(Exception):
    """Raised from ``receive`` when a body breaks a limit; the middleware answers for it."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


_SIGNIFICANT = re.compile(rb'[\[\]{}"\\]')


class DepthCounter:
    """Nesting depth of a JSON text fed in pieces (brackets inside strings do not count)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.depth = 0
        self._in_string = False
        self._escaped = False

    def feed(self, chunk: bytes) -> bool:
        """False as soon as the depth goes past the limit."""
        if self._escaped and chunk:
            # the previous piece ended on a backslash inside a string: skip the escaped byte
            self._escaped = False
            chunk = chunk[1:]
        position = 0
        for match in _SIGNIFICANT.finditer(chunk):
            start = match.start()
            if start < position:
                continue  # the byte after a backslash
            char = chunk[start]
            if self._in_string:
                if char == 0x5C:  # backslash: the next byte is escaped
                    if start + 1 >= len(chunk):
                        self._escaped = True
                    position = start + 2
                elif char == 0x22:
                    self._in_string = False
            elif char == 0x22:
                self._in_string = True
            elif char in (0x5B, 0x7B):
                self.depth += 1
                if self.depth > self.limit:
                    return False
            elif char in (0x5D, 0x7D):
                self.depth -= 1
        return True


@dataclass(frozen=True)
class RouteCap:
    """A body cap other than the default for paths starting with ``prefix`` (webhooks: smaller;
    uploads: the upload limit)."""

    prefix: str
    max_bytes: int
    setting: str
    #: the field an error names (an upload's ``file``)
    field: str | None = None


def _too_large(cap: int, setting: str, field: str | None) -> BodyRefused:
    return BodyRefused(
        413, "payload_too_large", f"the request body is larger than {cap} bytes ({setting})", field
    )


def _too_deep(limit: int) -> BodyRefused:
    return BodyRefused(
        400,
        "json_too_deep",
        f"the JSON body nests deeper than {limit} levels (API_MAX_JSON_DEPTH)",
    )


def _checks_depth(content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    return not (kind.startswith("multipart/") or kind == "application/x-www-form-urlencoded")


async def _answer(send: Send, refused: BodyRefused) -> None:
    error = {"code": refused.code, "message": refused.message}
    if refused.field:
        error["field"] = refused.field
    body = json.dumps({"error": error}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": refused.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimits:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        max_depth: int,
        routes: Sequence[RouteCap] = (),
        on_refused: Callable[[Scope, BodyRefused], None] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self.routes = sorted(routes, key=lambda r: len(r.prefix), reverse=True)
        self.on_refused = on_refused

    def cap(self, path: str) -> RouteCap:
        for route in self.routes:
            if path.startswith(route.prefix):
                return route
        return RouteCap("", self.max_bytes, "API_MAX_BODY_BYTES")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self.cap(scope.get("path", ""))
        cap = route.max_bytes
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").decode("latin-1").strip()
        if declared.isdigit() and int(declared) > cap:
            early = _too_large(cap, route.setting, route.field)
            self._refused(scope, early)
            await _answer(send, early)
            return
        depth = (
            DepthCounter(self.max_depth)
            if _checks_depth(headers.get(b"content-type", b"").decode("latin-1"))
            else None
        )
        received = 0
        refused: BodyRefused | None = None
        started = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            if refused is not None:
                raise refused
            message = await receive()
            if message["type"] == "http.request":
                chunk: bytes = message.get("body", b"")
                received += len(chunk)
                if received > cap:
                    refused = _too_large(cap, route.setting, route.field)
                elif depth is not None and not depth.feed(chunk):
                    refused = _too_deep(self.max_depth)
                if refused is not None:
                    raise refused
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused is not None and not started:
                return  # the app answers for a body it could not read: ours replaces it
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyRefused:
            if started:
                raise
        except Exception:
            if refused is None or started:
                raise
        if refused is not None and not started:
            self._refused(scope, refused)
            await _answer(send, refused)

    def _refused(self, scope: Scope, refused: BodyRefused) -> None:
        if self.on_refused is not None:
            self.on_refused(scope, refused)
