"""One place that takes credentials out of text before it leaves the process: error answers, job
details, alerts, health checks and log lines all go through :func:`redact`.

Two layers:

- shapes: ``user:pass@`` in URLs, key-like query parameters (``api-key``, ``token``, ...), long
  opaque path segments (RPC URLs such as ``https://host/v2/<key>``), ``Bearer``/``Basic``
  credentials, Daraja's callback token in ``/mpesa-callback/<token>``;
- values: every secret this process was configured with (``register_secrets``), wherever it
  appears, however it was formatted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import SecretStr

MASK = "***"
#: values shorter than this are not registered: masking them would mangle ordinary text
MIN_SECRET_LENGTH = 8

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@'\"]+@")
_QUERY_KEY = re.compile(
    r"(?P<name>[?&;](?:[a-z0-9_-]*(?:key|token|secret|password|passwd|pwd|signature|sig|auth|"
    r"credential|apikey|access)[a-z0-9_-]*))=(?P<value>[^&#\s'\"]+)",
    re.IGNORECASE,
)
#: a path segment of 20+ characters mixing letters and digits: RPC and webhook keys
_PATH_KEY = re.compile(
    r"(?P<prefix>https?://[^/\s'\"]+(?:/[^/\s?#'\"]*)*?/)"
    r"(?P<key>(?=[A-Za-z0-9_-]*[0-9])(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{20,})"
)
_CALLBACK_TOKEN = re.compile(r"(?P<prefix>/mpesa-callback/)[^/\s?#'\"]+")
_AUTH_HEADER = re.compile(r"(?P<scheme>\b(?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]{8,}")

_secrets: set[str] = set()


def register_secret(value: str | SecretStr | None) -> None:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value and len(value) >= MIN_SECRET_LENGTH:
        _secrets.add(value)


def register_secrets(values: Iterable[Any]) -> None:
    for value in values:
        if isinstance(value, SecretStr | str) or value is None:
            register_secret(value)


def register_settings(settings: Any) -> None:
    """Every ``SecretStr`` of the settings, and the key parts of the configured URLs."""
    for name, value in settings:
        if isinstance(value, SecretStr):
            register_secret(value)
        elif isinstance(value, str) and name.endswith("_url") and value != redact(value):
            # a URL carrying a key: the key itself is a secret wherever it shows up
            for match in _PATH_KEY.finditer(value):
                register_secret(match.group("key"))


def redact(text: str) -> str:
    """``text`` without credentials. Cheap enough for every log line."""
    if not text:
        return text
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    text = _USERINFO.sub(rf"\g<scheme>{MASK}@", text)
    text = _QUERY_KEY.sub(rf"\g<name>={MASK}", text)
    text = _PATH_KEY.sub(rf"\g<prefix>{MASK}", text)
    text = _CALLBACK_TOKEN.sub(rf"\g<prefix>{MASK}", text)
    return _AUTH_HEADER.sub(rf"\g<scheme>{MASK}", text)


def redact_value(value: Any) -> Any:
    """Strings redacted, containers walked (log event dictionaries, JSON details)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v) for v in value)
    if isinstance(value, BaseException):
        return redact(f"{type(value).__name__}: {value}")
    return value
