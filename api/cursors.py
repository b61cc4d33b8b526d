"""Pagination cursors the API hands out: Temporal's page token with a MAC over the listing's
query, so a cursor this API did not return (garbage, another listing's, edited) is a 422 naming
``cursor`` at once, before anything reaches Temporal (whose answer to a bad token is an internal
error the client retries, then a 503)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from domain.errors import InvalidInput
from runtime.settings import Settings

MAC_BYTES = 16
NOT_OURS = "cursor is not one this API returned"


def _mac(settings: Settings, scope: str, token: bytes) -> bytes:
    key = hashlib.sha256(b"settle-cursor:" + settings.jwt_secret.get_secret_value().encode())
    message = scope.encode() + b"\x00" + token
    return hmac.new(key.digest(), message, hashlib.sha256).digest()[:MAC_BYTES]


def encode(settings: Settings, scope: str, token: bytes | None) -> str | None:
    """The cursor for the next page of the listing ``scope`` (its query); None on the last page."""
    if not token:
        return None
    return base64.urlsafe_b64encode(_mac(settings, scope, token) + token).decode()


def decode(settings: Settings, scope: str, cursor: str | None) -> bytes | None:
    """Temporal's page token from a cursor :func:`encode` gave for the same listing."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor.encode())
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(NOT_OURS, field="cursor") from exc
    mac, token = raw[:MAC_BYTES], raw[MAC_BYTES:]
    if not token or not hmac.compare_digest(mac, _mac(settings, scope, token)):
        raise InvalidInput(NOT_OURS, field="cursor")
    return token
