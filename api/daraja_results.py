"""What Daraja posts to the API: the caller's checks (URL token, source allow-list), the body,
a Transaction Status result, and the answer Daraja expects. Shared by the deposit's routes
(:mod:`api.routers.deposits`) and the reconciliation's (:mod:`api.routers.reconciliations`)."""

from __future__ import annotations

import hmac
import json
from typing import Any

from fastapi import Request
from pydantic import BaseModel

from api.client_address import client_address, in_networks
from api.metrics import ApiMetrics
from domain.errors import BadRequest, DarajaCallbackInvalid, Forbidden
from domain.mpesa import TransactionStatusResult
from providers.daraja import parse_transaction_status_result
from runtime.logging import get_logger
from runtime.settings import Settings

log = get_logger("api.deposits")


class CallbackAnswer(BaseModel):
    ResultCode: int = 0
    ResultDesc: str = "Accepted"


def _source_allowed(settings: Settings, host: str | None) -> bool:
    if not settings.mpesa_callback_allowed_ips:
        return True
    return in_networks(host, settings.mpesa_callback_allowed_ips)


def check_caller(
    token: str, request: Request, settings: Settings, metrics: ApiMetrics
) -> str | None:
    """The URL token, then the source address (TRUSTED_PROXY_IPS may name it); returns it."""
    expected = settings.mpesa_callback_token.get_secret_value()
    if not hmac.compare_digest(token.encode(), expected.encode()):
        metrics.mpesa_callbacks.labels("bad_token").inc()
        raise Forbidden("callback token not recognised")
    source = client_address(request, settings.trusted_proxy_ips)
    if not _source_allowed(settings, source):
        metrics.mpesa_callbacks.labels("ip_refused").inc()
        log.warning("callback from a source outside the allow-list", source=source)
        raise Forbidden("callback source not allowed")
    return source


async def json_body(request: Request, metrics: ApiMetrics) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except ValueError as exc:
        metrics.mpesa_callbacks.labels("malformed").inc()
        raise BadRequest("callback body is not valid JSON") from exc


async def read_status_result(
    token: str,
    request: Request,
    settings: Settings,
    metrics: ApiMetrics,
    *,
    timed_out: bool,
) -> TransactionStatusResult:
    """A Transaction Status result (or queue timeout) from Daraja, checked like the STK callback
    (URL token, source allow-list) and parsed; 400 for a malformed body. Shared by the deposit's
    and the reconciliation's result routes, which differ only in whose workflow gets it."""
    check_caller(token, request, settings, metrics)
    payload = await json_body(request, metrics)
    try:
        return parse_transaction_status_result(payload, timed_out=timed_out)
    except DarajaCallbackInvalid as exc:
        metrics.mpesa_callbacks.labels("malformed").inc()
        raise BadRequest(exc.message) from exc
