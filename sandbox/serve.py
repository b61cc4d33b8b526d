"""Run ASGI apps on uvicorn inside an existing event loop (the sandbox process and the tests)."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI


@dataclass
class RunningServer:
    server: uvicorn.Server
    task: asyncio.Task[None]
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind first, so a port of 0 gives us the chosen port before the app is built."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


async def serve(
    app: FastAPI, host: str = "127.0.0.1", port: int = 0, *, sock: socket.socket | None = None
) -> RunningServer:
    sock = sock or bind_socket(host, port)
    # proxy headers off, as in ``python -m api``: the peer is the caller (TRUSTED_PROXY_IPS decides)
    config = uvicorn.Config(
        app, log_level="warning", lifespan="on", access_log=False, proxy_headers=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            await task  # raises the startup error
        await asyncio.sleep(0.01)
    return RunningServer(server, task, host, sock.getsockname()[1])
