"""Email through ``aiosmtplib`` (plain, STARTTLS or implicit TLS; auth from settings), with text and
HTML bodies rendered from Jinja2 templates in ``providers/templates/email/``.

Each template has ``<name>.subject.j2``, ``<name>.txt.j2`` and ``<name>.html.j2``. Delivery is
at-least-once (a worker killed after the send, before its row says so, sends again), so every
message's ``Message-ID`` is derived from the caller's notification id alone
(:func:`message_id_header`): a resend is the same message to the receiver, never a new one.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import socket
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

import aiosmtplib
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from domain.errors import EmailRejected, EmailUnavailable

TEMPLATES = Path(__file__).with_name("templates") / "email"
#: what a Message-ID's left part may hold (RFC 5322 dot-atom text, without the dot)
_NOT_ATEXT = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")


def message_id_header(notification_id: str, sender: str) -> str:
    """``<notification id, readable, + a short digest of it @ the sender's domain>``: the same
    for every attempt of one notification, different for two (the digest keeps ids that read
    alike once cleaned apart)."""
    readable = _NOT_ATEXT.sub("-", notification_id).strip("-")[:120] or "message"
    digest = hashlib.sha256(notification_id.encode()).hexdigest()[:12]
    _, at, domain = sender.rpartition("@")
    domain = re.sub(r"[^A-Za-z0-9.-]+", "", domain).strip(".-") if at else ""
    return f"<{readable}.{digest}@{domain or 'settle.local'}>"


TEMPLATE_NAMES = ("payment_confirmation", "nft_minted", "refund_confirmation", "admin_alert")


class Mailer:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        security: Literal["plain", "starttls", "ssl"] = "plain",
        username: str | None = None,
        password: str | None = None,
        timeout_seconds: float = 15.0,
    ) -> None:
        self._host, self._port, self._sender = host, port, sender
        self._security, self._username, self._password = security, username, password
        self._timeout = timeout_seconds
        #: the readiness probe's connection, kept between probes (no login per probe)
        self._probe: aiosmtplib.SMTP | None = None
        #: the name given in EHLO: aiosmtplib looks it up (``socket.getfqdn``, a DNS query, in a
        #: thread) on every connection unless told; looked up once here
        self._local_hostname: str | None = None
        self._env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
            undefined=StrictUndefined,
        )

    def render(
        self, template: str, context: dict[str, Any], *, to: str, message_id: str
    ) -> EmailMessage:
        if template not in TEMPLATE_NAMES:
            raise EmailRejected(f"no email template {template!r}")
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = to
        message["Subject"] = (
            self._env.get_template(f"{template}.subject.j2").render(context).strip()
        )
        message["Message-ID"] = message_id_header(message_id, self._sender)
        message["X-Settle-Reference"] = message_id
        message.set_content(self._env.get_template(f"{template}.txt.j2").render(context))
        message.add_alternative(
            self._env.get_template(f"{template}.html.j2").render(context), subtype="html"
        )
        return message

    async def check_reachable(self) -> None:
        """NOOP on a kept connection; connect (TLS as configured) and log in only when there is
        none or the server dropped it: readiness probes must not log in every few seconds."""
        if self._probe is not None and self._probe.is_connected:
            try:
                await self._probe.noop()
                return
            except aiosmtplib.SMTPException:
                self._probe.close()
                self._probe = None
        client = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            use_tls=self._security == "ssl",
            start_tls=self._security == "starttls",
            timeout=self._timeout,
        )
        await client.connect()
        try:
            if self._username and self._password:
                await client.login(self._username, self._password)
            await client.noop()
        except BaseException:
            client.close()
            raise
        self._probe = client

    async def aclose(self) -> None:
        """Close the probe's connection, if any."""
        probe, self._probe = self._probe, None
        if probe is not None and probe.is_connected:
            try:
                await probe.quit()
            except aiosmtplib.SMTPException:
                probe.close()

    async def send(
        self, template: str, context: dict[str, Any], *, to: str, message_id: str
    ) -> None:
        message = self.render(
            template, {**context, "reference": message_id}, to=to, message_id=message_id
        )
        if self._local_hostname is None:
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        try:
            await aiosmtplib.send(
                message,
                local_hostname=self._local_hostname,
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password,
                use_tls=self._security == "ssl",
                start_tls=self._security == "starttls",
                timeout=self._timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise EmailRejected(f"recipient refused: {to}") from exc
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise EmailRejected(f"SMTP authentication failed: {exc}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            if 500 <= exc.code < 600:
                raise EmailRejected(f"SMTP {exc.code}: {exc.message}") from exc
            raise EmailUnavailable(f"SMTP {exc.code}: {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise EmailUnavailable(f"SMTP {self._host}:{self._port}: {exc}") from exc
