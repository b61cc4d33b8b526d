"""A fault-injecting TCP proxy in front of one provider (Daraja, Stripe, anvil, the Solana RPC,
SMTP), generalising ``sandbox/rpc_proxy.py``: it passes bytes through, or fails the way a real
provider does when it is down.

It works below HTTP so one proxy serves every protocol Settle speaks, keep-alive included: a
mode change aborts every open connection, so pooled connections see the fault at once (that cut
is itself a dropped connection). The modes:

``pass``     bytes go both ways untouched
``error``    HTTP: the request is read and answered ``503`` without reaching the provider;
             SMTP: ``421`` greeting, then closed (a server refusing mail)
``timeout``  the connection is accepted and never answered (until the mode changes)
``drop``     HTTP: the request reaches the provider, its answer is thrown away and the connection
             closed: the effect happened, the caller cannot know it (the hardest case)
``refuse``   closed as soon as it is accepted
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from enum import StrEnum


class Mode(StrEnum):
    PASS = "pass"  # noqa: S105 - a mode, not a password
    ERROR = "error"
    TIMEOUT = "timeout"
    DROP = "drop"
    REFUSE = "refuse"


#: the faults of a provider outage, in the order an outage cycles through them
HTTP_FAULTS = (Mode.ERROR, Mode.TIMEOUT, Mode.DROP)
SMTP_FAULTS = (Mode.ERROR, Mode.REFUSE, Mode.TIMEOUT)

_HTTP_503 = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Content-Length: 36\r\nConnection: close\r\n\r\n"
    b'{"error": "injected by chaos proxy"}'
)
_SMTP_421 = b"421 4.3.2 Service not available (injected by chaos proxy)\r\n"
#: longest request head read before answering ``error``
_HEAD_LIMIT = 64 * 1024


class FaultProxy:
    """``127.0.0.1:<port>`` -> ``upstream_host:upstream_port``, in :attr:`mode`."""

    def __init__(
        self, name: str, upstream_host: str, upstream_port: int, *, protocol: str = "http"
    ) -> None:
        self.name = name
        self.upstream = (upstream_host, upstream_port)
        self.protocol = protocol
        self.mode = Mode.PASS
        #: connections handled, by the mode they met
        self.connections: Counter[str] = Counter()
        self._server: asyncio.Server | None = None
        self._live: set[asyncio.StreamWriter] = set()
        self._changed = asyncio.Event()

    @property
    def faults(self) -> tuple[Mode, ...]:
        return SMTP_FAULTS if self.protocol == "smtp" else HTTP_FAULTS

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", port)

    async def stop(self) -> None:
        self.set_mode(Mode.PASS)
        if self._server is not None:
            self._server.close()
            self._abort_all()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    def set_mode(self, mode: Mode) -> None:
        """Switch, and cut every open connection so that none carries on in the old mode."""
        if mode is self.mode:
            return
        self.mode = mode
        self._abort_all()
        self._changed.set()
        self._changed = asyncio.Event()

    def _abort_all(self) -> None:
        for writer in list(self._live):
            writer.transport.abort()
        self._live.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        mode = self.mode
        self.connections[mode] += 1
        self._live.add(writer)
        try:
            if mode is Mode.PASS:
                await self._pipe(reader, writer)
            elif mode is Mode.ERROR:
                await self._error(reader, writer)
            elif mode is Mode.TIMEOUT:
                await self._hold(reader)
            elif mode is Mode.DROP:
                await self._drop(reader, writer)
            # REFUSE: closed below at once
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # either side went away: that is what this proxy is for
        finally:
            self._live.discard(writer)
            writer.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self._live.add(up_writer)
        try:
            await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer))
        finally:
            self._live.discard(up_writer)
            up_writer.transport.abort()

    async def _error(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.protocol == "smtp":
            writer.write(_SMTP_421)
        else:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            writer.write(_HTTP_503)
        await writer.drain()

    async def _hold(self, reader: asyncio.StreamReader) -> None:
        """Read and never answer, until the mode changes or the caller gives up."""
        changed = asyncio.ensure_future(self._changed.wait())
        try:
            while not changed.done():
                chunk = asyncio.ensure_future(reader.read(65536))
                await asyncio.wait({chunk, changed}, return_when=asyncio.FIRST_COMPLETED)
                if chunk.done() and not chunk.result():
                    return
                if not chunk.done():
                    chunk.cancel()
        finally:
            changed.cancel()

    async def _drop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.protocol == "smtp":
            return
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self._live.add(up_writer)
        try:
            forward = asyncio.ensure_future(_copy(reader, up_writer))
            # the provider's first byte of answer: the request was taken; throw the answer away
            await asyncio.wait_for(up_reader.read(1), 60)
            forward.cancel()
        finally:
            self._live.discard(up_writer)
            up_writer.transport.abort()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while chunk := await reader.read(65536):
        writer.write(chunk)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()
