"""An SMTP catcher (``aiosmtpd``): accepts every message and keeps it as an ``.eml`` file (and in
memory for tests). It speaks real SMTP, so ``aiosmtplib`` sends to it as to any server."""

from __future__ import annotations

import asyncio
import email
import uuid
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Caught:
    sender: str
    recipients: list[str]
    message: Message
    path: Path | None


@dataclass
class MailCatcher:
    directory: Path | None = None
    messages: list[Caught] = field(default_factory=list)
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode()
        path = None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"{uuid.uuid4().hex}.eml"
            path.write_bytes(raw)
        caught = Caught(
            str(envelope.mail_from),
            [str(r) for r in envelope.rcpt_tos],
            email.message_from_bytes(raw),
            path,
        )
        async with self._arrived:
            self.messages.append(caught)
            self._arrived.notify_all()
        return "250 Message accepted for delivery"

    def to(self, recipient: str) -> list[Caught]:
        return [c for c in self.messages if recipient in c.recipients]

    async def wait_for(self, predicate: Any, within_seconds: float = 20.0) -> list[Caught]:
        """Until some caught messages satisfy ``predicate(list) -> bool``."""

        async def ready() -> list[Caught]:
            async with self._arrived:
                await self._arrived.wait_for(lambda: predicate(self.messages))
                return list(self.messages)

        return await asyncio.wait_for(ready(), within_seconds)


async def start_smtp(
    catcher: MailCatcher, host: str = "127.0.0.1", port: int = 0
) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: SMTP(catcher, hostname="sandbox.settle.local"), host, port
    )
