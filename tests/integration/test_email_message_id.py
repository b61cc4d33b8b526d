"""An email sent again (a worker killed after the send, before its row) is the same message to the
receiver: the real SMTP catcher sees one Message-ID per notification, whatever the attempts."""

from __future__ import annotations

from providers.email import Mailer
from sandbox.smtp import MailCatcher, start_smtp


async def test_a_resent_notification_keeps_its_message_id() -> None:
    catcher = MailCatcher()
    server = await start_smtp(catcher)
    port = server.sockets[0].getsockname()[1]
    mailer = Mailer(
        host="127.0.0.1", port=port, sender="Settle <no-reply@settle.test>", timeout_seconds=5
    )
    try:
        for notification in ("p1:payment-email", "p1:payment-email", "p2:payment-email"):
            await mailer.send(
                "admin_alert",
                {"title": "t", "detail": "d", "workflow_id": "w"},
                to="buyer@example.com",
                message_id=notification,
            )
        await catcher.wait_for(lambda msgs: len(msgs) == 3)
    finally:
        server.close()
        await server.wait_closed()
    ids = [c.message["Message-ID"] for c in catcher.messages]
    refs = [c.message["X-Settle-Reference"] for c in catcher.messages]
    assert refs == ["p1:payment-email", "p1:payment-email", "p2:payment-email"]
    assert ids[0] == ids[1] != ids[2]
    assert all(i.startswith("<") and i.endswith("@settle.test>") for i in ids)
