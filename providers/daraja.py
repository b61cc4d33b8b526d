"""Safaricom M-Pesa Daraja client: OAuth, STK Push (Lipa na M-Pesa Online), STK Push Query,
Transaction Status (by receipt; its result comes asynchronously to a ResultURL).

Daraja specifics worth knowing:

* The OAuth token (client credentials, HTTP Basic) lives about an hour; it is cached here until
  shortly before it expires, and dropped when Daraja says it is invalid.
* STK Push's ``Password`` is ``base64(shortcode + passkey + timestamp)`` and ``Timestamp`` is
  ``YYYYMMDDHHmmss`` in Nairobi time.
* STK Push Query answers HTTP 500 with ``errorCode`` ``500.001.1001`` while the customer has not
  finished; that is "pending", not a failure.
* Callbacks are not signed; the API protects its callback URL with a secret path token.
* STK Push has no idempotency key: an answer lost after the request went out (timeout, 5xx,
  dropped connection) is :class:`DarajaPushUnknown`, never a plain retryable error, so the caller
  resolves it before prompting the customer again.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx

from domain.errors import (
    DarajaAuthError,
    DarajaCallbackInvalid,
    DarajaError,
    DarajaPushUnknown,
    DarajaRateLimited,
    DarajaRejected,
    DarajaUnavailable,
)
from domain.money import Currency, to_minor
from domain.mpesa import (
    StkCallback,
    StkPushResult,
    StkQueryResult,
    TransactionStatusRequested,
    TransactionStatusResult,
)

NAIROBI = timezone(timedelta(hours=3))
#: Daraja's "request still being processed" code on STK Push Query
PENDING_ERROR_CODE = "500.001.1001"
#: Daraja's "invalid access token" code
INVALID_TOKEN_ERROR_CODE = "404.001.03"  # noqa: S105 - an error code, not a secret


def daraja_timestamp(now: datetime) -> str:
    return now.astimezone(NAIROBI).strftime("%Y%m%d%H%M%S")


def stk_password(shortcode: str, passkey: str, timestamp: str) -> str:
    return base64.b64encode(f"{shortcode}{passkey}{timestamp}".encode()).decode()


@dataclass
class _Token:
    value: str
    expires_at: float


class DarajaClient:
    """One instance per process; safe to share between concurrent activities."""

    def __init__(
        self,
        *,
        base_url: str,
        consumer_key: str,
        consumer_secret: str,
        shortcode: str,
        passkey: str,
        transaction_type: str = "CustomerPayBillOnline",
        initiator_name: str = "",
        security_credential: str = "",
        timeout_seconds: float = 15.0,
        token_refresh_margin_seconds: float = 60.0,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(NAIROBI),
    ) -> None:
        self._http = http or httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=timeout_seconds
        )
        self._owns_http = http is None
        self._consumer_key = consumer_key
        self._consumer_secret = consumer_secret
        self.shortcode = shortcode
        self._passkey = passkey
        self._transaction_type = transaction_type
        self._initiator_name = initiator_name
        self._security_credential = security_credential
        self._margin = token_refresh_margin_seconds
        self._clock = clock
        self._now = now
        self._token: _Token | None = None
        self._token_lock = asyncio.Lock()
        #: tokens fetched so far (for tests and metrics: the cache should keep this at one)
        self.tokens_fetched = 0

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    # --- OAuth ---------------------------------------------------------------------------------

    async def access_token(self) -> str:
        async with self._token_lock:
            if self._token and self._clock() < self._token.expires_at:
                return self._token.value
            response = await self._send(
                "GET",
                "/oauth/v1/generate",
                params={"grant_type": "client_credentials"},
                auth=(self._consumer_key, self._consumer_secret),
            )
            if response.status_code in (400, 401, 403):
                raise DarajaAuthError(
                    f"Daraja refused the consumer key/secret (HTTP {response.status_code})"
                )
            body = self._json(response)
            self._raise_for_error(response, body)
            try:
                token = str(body["access_token"])
                lifetime = float(body.get("expires_in", 3599))
            except (KeyError, TypeError, ValueError) as exc:
                raise DarajaUnavailable(f"unexpected OAuth answer: {body!r}") from exc
            self._token = _Token(token, self._clock() + max(lifetime - self._margin, 1.0))
            self.tokens_fetched += 1
            return token

    async def check_reachable(self) -> None:
        """Fetch a fresh OAuth token: the cheapest call that proves Daraja answers (a cached token
        would prove nothing), and it asks nothing of any customer."""
        self._token = None
        await self.access_token()

    def _forget_token(self, token: str) -> None:
        if self._token and self._token.value == token:
            self._token = None

    # --- STK Push ------------------------------------------------------------------------------

    async def stk_push(
        self,
        *,
        phone: str,
        amount_kes: int,
        callback_url: str,
        account_reference: str,
        description: str,
    ) -> StkPushResult:
        """Prompt the customer's phone for ``amount_kes`` whole shillings."""
        timestamp = daraja_timestamp(self._now())
        payload = {
            "BusinessShortCode": self.shortcode,
            "Password": stk_password(self.shortcode, self._passkey, timestamp),
            "Timestamp": timestamp,
            "TransactionType": self._transaction_type,
            "Amount": amount_kes,
            "PartyA": phone,
            "PartyB": self.shortcode,
            "PhoneNumber": phone,
            "CallBackURL": callback_url,
            "AccountReference": account_reference[:12],
            "TransactionDesc": description[:13],
        }
        await self.access_token()  # a failure here never reached the push: plainly retryable
        try:
            body = await self._authorized_post("/mpesa/stkpush/v1/processrequest", payload)
        except DarajaUnavailable as exc:
            if isinstance(exc.__cause__, httpx.ConnectError | httpx.ConnectTimeout):
                raise  # the request never left: nobody was prompted
            raise DarajaPushUnknown(
                f"STK push answer lost, the customer may have been prompted: {exc.message}",
                error_code=exc.error_code,
            ) from exc
        if str(body.get("ResponseCode")) != "0":
            raise DarajaRejected(
                f"STK push not accepted: {body.get('ResponseDescription') or body!r}",
                error_code=str(body.get("ResponseCode")),
            )
        try:
            return StkPushResult(
                merchant_request_id=str(body["MerchantRequestID"]),
                checkout_request_id=str(body["CheckoutRequestID"]),
                customer_message=str(body.get("CustomerMessage", "")),
            )
        except KeyError as exc:
            raise DarajaUnavailable(f"STK push answer lacks {exc}") from exc

    async def stk_query(self, checkout_request_id: str) -> StkQueryResult:
        """Ask Daraja for the outcome of an STK push; ``pending`` while the customer decides."""
        timestamp = daraja_timestamp(self._now())
        payload = {
            "BusinessShortCode": self.shortcode,
            "Password": stk_password(self.shortcode, self._passkey, timestamp),
            "Timestamp": timestamp,
            "CheckoutRequestID": checkout_request_id,
        }
        try:
            body = await self._authorized_post("/mpesa/stkpushquery/v1/query", payload)
        except DarajaError as exc:
            if exc.error_code == PENDING_ERROR_CODE:
                return StkQueryResult(checkout_request_id=checkout_request_id, pending=True)
            raise
        if "ResultCode" not in body:
            raise DarajaUnavailable(f"STK query answer lacks ResultCode: {body!r}")
        try:
            result_code = int(body["ResultCode"])
        except (TypeError, ValueError) as exc:
            raise DarajaUnavailable(f"STK query ResultCode is not a number: {body!r}") from exc
        return StkQueryResult(
            checkout_request_id=checkout_request_id,
            result_code=result_code,
            result_desc=str(body.get("ResultDesc", "")),
        )

    async def transaction_status(
        self, *, receipt: str, result_url: str, timeout_url: str, originator_id: str
    ) -> TransactionStatusRequested:
        """Ask Daraja for a transaction by its M-Pesa receipt. Only the acknowledgement comes
        back here; the result is POSTed to ``result_url`` (or ``timeout_url``) later."""
        payload = {
            "Initiator": self._initiator_name,
            "SecurityCredential": self._security_credential,
            "CommandID": "TransactionStatusQuery",
            "TransactionID": receipt,
            "OriginatorConversationID": originator_id,
            "PartyA": self.shortcode,
            "IdentifierType": "4",
            "ResultURL": result_url,
            "QueueTimeOutURL": timeout_url,
            "Remarks": "Settle deposit check",
            "Occasion": "deposit",
        }
        body = await self._authorized_post("/mpesa/transactionstatus/v1/query", payload)
        if str(body.get("ResponseCode")) != "0":
            raise DarajaRejected(
                f"Transaction Status not accepted: {body.get('ResponseDescription') or body!r}",
                error_code=str(body.get("ResponseCode")),
            )
        try:
            return TransactionStatusRequested(
                originator_conversation_id=str(
                    body.get("OriginatorConversationID") or originator_id
                ),
                conversation_id=str(body["ConversationID"]),
            )
        except KeyError as exc:
            raise DarajaUnavailable(f"Transaction Status answer lacks {exc}") from exc

    # --- transport -----------------------------------------------------------------------------

    async def _authorized_post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        for attempt in (1, 2):
            token = await self.access_token()
            response = await self._send(
                "POST", path, json=payload, headers={"Authorization": f"Bearer {token}"}
            )
            body = self._json(response)
            if self._token_rejected(response, body) and attempt == 1:
                self._forget_token(token)
                continue
            self._raise_for_error(response, body)
            return body
        raise DarajaAuthError("Daraja rejected a freshly issued access token")

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise DarajaUnavailable(f"Daraja timed out on {path}") from exc
        except httpx.TransportError as exc:
            raise DarajaUnavailable(f"Daraja unreachable on {path}: {exc}") from exc

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            if response.status_code >= 500:
                raise DarajaUnavailable(f"Daraja HTTP {response.status_code} without JSON body")
            raise DarajaRejected(f"Daraja HTTP {response.status_code}: {response.text[:200]!r}")
        return body

    @staticmethod
    def _token_rejected(response: httpx.Response, body: dict[str, Any]) -> bool:
        return response.status_code == 401 or body.get("errorCode") == INVALID_TOKEN_ERROR_CODE

    @staticmethod
    def _raise_for_error(response: httpx.Response, body: dict[str, Any]) -> None:
        if response.status_code < 400 and "errorCode" not in body:
            return
        code = str(body.get("errorCode", ""))
        message = f"Daraja {response.status_code} {code}: {body.get('errorMessage', body)}"
        if response.status_code == 429:
            raise DarajaRateLimited(message, error_code=code)
        if response.status_code >= 500:
            raise DarajaUnavailable(message, error_code=code)
        if response.status_code in (401, 403):
            raise DarajaAuthError(message, error_code=code)
        raise DarajaRejected(message, error_code=code)


# --- callbacks -----------------------------------------------------------------------------------


def parse_stk_callback(body: Any) -> StkCallback:
    """Validate and parse ``{"Body": {"stkCallback": {...}}}``; raise DarajaCallbackInvalid."""
    try:
        callback = body["Body"]["stkCallback"]
        merchant_request_id = callback["MerchantRequestID"]
        checkout_request_id = callback["CheckoutRequestID"]
        result_code = callback["ResultCode"]
        result_desc = callback["ResultDesc"]
    except (KeyError, TypeError) as exc:
        raise DarajaCallbackInvalid(f"callback lacks Body.stkCallback field {exc}") from exc
    if not isinstance(merchant_request_id, str) or not merchant_request_id:
        raise DarajaCallbackInvalid("MerchantRequestID must be a non-empty string")
    if not isinstance(checkout_request_id, str) or not checkout_request_id:
        raise DarajaCallbackInvalid("CheckoutRequestID must be a non-empty string")
    if isinstance(result_code, bool) or not isinstance(result_code, int | str):
        raise DarajaCallbackInvalid("ResultCode must be a number")
    try:
        code = int(result_code)
    except ValueError as exc:
        raise DarajaCallbackInvalid("ResultCode must be a number") from exc
    parsed = StkCallback(
        merchant_request_id=merchant_request_id,
        checkout_request_id=checkout_request_id,
        result_code=code,
        result_desc=str(result_desc),
    )
    if code != 0:
        return parsed
    items = (callback.get("CallbackMetadata") or {}).get("Item")
    if not isinstance(items, list):
        raise DarajaCallbackInvalid("a successful callback needs CallbackMetadata.Item")
    meta = {i.get("Name"): i.get("Value") for i in items if isinstance(i, dict)}
    receipt = meta.get("MpesaReceiptNumber")
    amount = meta.get("Amount")
    if not isinstance(receipt, str) or not receipt:
        raise DarajaCallbackInvalid("a successful callback needs MpesaReceiptNumber")
    if isinstance(amount, bool) or not isinstance(amount, int | float) or amount <= 0:
        raise DarajaCallbackInvalid("a successful callback needs a positive Amount")
    # Daraja sends Amount as a JSON number of shillings (1 or 1.0); KES cents from here on
    try:
        amount_minor = to_minor(Decimal(str(amount)), Currency.KES)
    except ValueError as exc:
        raise DarajaCallbackInvalid(f"Amount {amount!r} is not a KES amount") from exc
    return parsed.model_copy(
        update={
            "receipt": receipt,
            "amount_minor": amount_minor,
            "phone": str(meta["PhoneNumber"]) if meta.get("PhoneNumber") is not None else None,
            "transaction_date": (
                str(meta["TransactionDate"]) if meta.get("TransactionDate") is not None else None
            ),
        }
    )


def _kes_minor(amount: Any, field: str) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int | float | str):
        raise DarajaCallbackInvalid(f"{field} must be a number")
    try:
        return to_minor(Decimal(str(amount)), Currency.KES)
    except (ValueError, ArithmeticError) as exc:
        raise DarajaCallbackInvalid(f"{field} {amount!r} is not a KES amount") from exc


def parse_transaction_status_result(
    body: Any, *, timed_out: bool = False
) -> TransactionStatusResult:
    """Validate and parse the Transaction Status result ``{"Result": {...}}`` that Daraja POSTs
    to the ResultURL (or the QueueTimeOutURL: ``timed_out``); raise DarajaCallbackInvalid."""
    try:
        result = body["Result"]
        originator = result["OriginatorConversationID"]
        conversation = result["ConversationID"]
        code = result["ResultCode"]
    except (KeyError, TypeError) as exc:
        raise DarajaCallbackInvalid(f"result lacks Result field {exc}") from exc
    if not isinstance(originator, str) or not originator:
        raise DarajaCallbackInvalid("OriginatorConversationID must be a non-empty string")
    if not isinstance(conversation, str) or not conversation:
        raise DarajaCallbackInvalid("ConversationID must be a non-empty string")
    if isinstance(code, bool) or not isinstance(code, int | str):
        raise DarajaCallbackInvalid("ResultCode must be a number")
    try:
        result_code = int(code)
    except ValueError as exc:
        raise DarajaCallbackInvalid("ResultCode must be a number") from exc
    items = ((result.get("ResultParameters") or {}).get("ResultParameter")) or []
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        raise DarajaCallbackInvalid("ResultParameters.ResultParameter must be a list")
    params = {i.get("Key"): i.get("Value") for i in items if isinstance(i, dict)}
    amount = params.get("Amount")
    receipt = params.get("ReceiptNo") or result.get("TransactionID")
    status = params.get("TransactionStatus")
    return TransactionStatusResult(
        originator_conversation_id=originator,
        conversation_id=conversation,
        result_code=result_code,
        result_desc=str(result.get("ResultDesc", "")),
        receipt=str(receipt) if receipt else None,
        amount_minor=_kes_minor(amount, "Amount") if amount is not None else None,
        transaction_status=str(status) if status is not None else None,
        timed_out=timed_out,
    )
