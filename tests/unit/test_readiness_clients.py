"""Readiness probes reuse their SMTP connection (issue 13 §3): one connection and login, then a
NOOP per probe; a dropped connection is made again."""

from __future__ import annotations

import asyncio

from aiosmtpd.smtp import SMTP

from providers.email import Mailer
from sandbox.smtp import MailCatcher


async def test_the_smtp_probe_keeps_one_connection() -> None:
    connections: list[SMTP] = []

    def protocol() -> SMTP:
        connection = SMTP(MailCatcher(), hostname="probe.test")
        connections.append(connection)
        return connection

    server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    mailer = Mailer(host="127.0.0.1", port=port, sender="ops@settle.test", timeout_seconds=3)
    try:
        for _ in range(5):
            await mailer.check_reachable()
        assert len(connections) == 1
        # the server drops it: the next probe connects again, once
        connections[0].transport.close()  # type: ignore[union-attr]
        await asyncio.sleep(0.05)
        for _ in range(3):
            await mailer.check_reachable()
        assert len(connections) == 2
    finally:
        await mailer.aclose()
        server.close()
