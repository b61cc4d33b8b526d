"""Endpoint signing secrets are valid Standard Webhooks secrets, and deliveries verify with them."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from standardwebhooks import Webhook

from store.tickets import new_secret


def test_every_secret_is_standard_base64_of_32_bytes() -> None:
    # token_urlsafe secrets broke here about one time in four (binascii.Error on signing)
    for _ in range(500):
        secret = new_secret()
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32


def test_a_signed_delivery_verifies_with_the_endpoints_secret() -> None:
    secret = new_secret()
    body = json.dumps({"type": "ticket.purchased", "data": {"purchase_id": "p1"}})
    now = datetime.now(UTC)
    signature = Webhook(secret).sign("msg_1", now, body)
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    assert Webhook(secret).verify(body, headers)["data"] == {"purchase_id": "p1"}
