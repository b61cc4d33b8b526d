"""A Daraja-compatible stand-in: OAuth, STK Push, STK Push Query, the callback, and Transaction
Status (by receipt) with its asynchronous result to the ResultURL.

The outcome of an STK push is chosen by the last four digits of the phone number:

=========  ==================================================================
suffix     outcome
=========  ==================================================================
``1032``   ResultCode 1032, "Request cancelled by user"
``1037``   ResultCode 1037, "DS timeout user cannot be reached"
``0001``   ResultCode 1, "The balance is insufficient for the transaction."
``2001``   ResultCode 2001, "The initiator information is invalid." (wrong PIN)
``0000``   success, but no callback is ever sent (STK Push Query says success)
``0002``   success, and the callback is sent three times
``0003``   ResultCode 1032 (cancelled), but no callback is ever sent (STK Push Query says so)
``0503``   the push is accepted (the customer is prompted, success, one callback) but its HTTP
           answer is a 503: the client cannot know the CheckoutRequestID
other      success (the default), one callback after the configured delay
=========  ==================================================================

``/_sandbox/...`` routes are test controls that the real Daraja does not have.
"""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
import string
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from runtime.logging import get_logger

log = get_logger("sandbox.daraja")

PHONE = re.compile(r"^254(7|1)\d{8}$")
TIMESTAMP = re.compile(r"^\d{14}$")


@dataclass(frozen=True)
class Outcome:
    result_code: int
    result_desc: str
    callbacks: int = 1
    #: accept the push, then answer with this HTTP status instead of the acknowledgement
    answer_status: int | None = None


SUCCESS = Outcome(0, "The service request is processed successfully.")
OUTCOMES: dict[str, Outcome] = {
    "1032": Outcome(1032, "Request cancelled by user"),
    "1037": Outcome(1037, "DS timeout user cannot be reached"),
    "0001": Outcome(1, "The balance is insufficient for the transaction."),
    "2001": Outcome(2001, "The initiator information is invalid."),
    "0000": Outcome(0, SUCCESS.result_desc, callbacks=0),
    "0002": Outcome(0, SUCCESS.result_desc, callbacks=3),
    "0003": Outcome(1032, "Request cancelled by user", callbacks=0),
    "0503": Outcome(0, SUCCESS.result_desc, answer_status=503),
}


def outcome_for(phone: str) -> Outcome:
    return OUTCOMES.get(phone[-4:], SUCCESS)


@dataclass
class StkTransaction:
    merchant_request_id: str
    checkout_request_id: str
    phone: str
    amount: int
    callback_url: str
    outcome: Outcome
    final_at: float
    receipt: str
    callbacks_sent: int = 0


@dataclass
class SandboxState:
    consumer_key: str
    consumer_secret: str
    shortcode: str
    passkey: str
    callback_delay_seconds: float
    token_ttl_seconds: int = 3599
    tokens: dict[str, float] = field(default_factory=dict)
    transactions: dict[str, StkTransaction] = field(default_factory=dict)
    #: path fragment -> [remaining count, HTTP status]: injected failures for tests
    failures: dict[str, list[int]] = field(default_factory=dict)
    #: path fragment -> [remaining count, seconds]: injected latency for tests
    delays: dict[str, list[float]] = field(default_factory=dict)
    #: [remaining count, answer delay, callback delay]: pushes accepted, then answered late
    holds: list[float] = field(default_factory=lambda: [0, 0.0, 0.0])
    #: calls that have arrived, by path fragment (test visibility)
    arrivals: dict[str, int] = field(default_factory=dict)
    tokens_issued: int = 0
    stk_pushes: int = 0
    #: Transaction Status queries received, by receipt
    status_queries: dict[str, int] = field(default_factory=dict)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"requestId": uuid.uuid4().hex[:20], "errorCode": code, "errorMessage": message},
        status_code=status,
    )


def _receipt() -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "S" + "".join(secrets.choice(alphabet) for _ in range(9))


def create_daraja_app(
    *,
    consumer_key: str,
    consumer_secret: str,
    shortcode: str,
    passkey: str,
    callback_delay_seconds: float = 1.0,
) -> FastAPI:
    state = SandboxState(consumer_key, consumer_secret, shortcode, passkey, callback_delay_seconds)
    app = FastAPI(
        title="Sandbox Daraja", docs_url="/_sandbox/docs", openapi_url="/_sandbox/openapi.json"
    )
    app.state.sandbox = state
    http = httpx.AsyncClient(timeout=10)
    tasks: set[asyncio.Task[None]] = set()

    async def injected_failure(path: str) -> JSONResponse | None:
        state.arrivals[path] = state.arrivals.get(path, 0) + 1
        for fragment, delay in state.delays.items():
            if fragment in path and delay[0] > 0:
                delay[0] -= 1
                await asyncio.sleep(delay[1])
        for fragment, spec in state.failures.items():
            if fragment in path and spec[0] > 0:
                spec[0] -= 1
                return _error(spec[1], f"{spec[1]}.000.01", "injected sandbox failure")
        return None

    def bearer_ok(request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            return False
        expiry = state.tokens.get(header[len("Bearer ") :])
        return expiry is not None and expiry > time.monotonic()

    @app.get("/oauth/v1/generate")
    async def generate(request: Request, grant_type: str = "") -> JSONResponse:
        failure = await injected_failure("oauth")
        if failure:
            return failure
        if grant_type != "client_credentials":
            return _error(400, "400.008.02", "Invalid grant type passed")
        expected = base64.b64encode(
            f"{state.consumer_key}:{state.consumer_secret}".encode()
        ).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return _error(400, "400.008.01", "Invalid Authentication passed")
        token = secrets.token_urlsafe(24)
        state.tokens[token] = time.monotonic() + state.token_ttl_seconds
        state.tokens_issued += 1
        return JSONResponse({"access_token": token, "expires_in": str(state.token_ttl_seconds)})

    async def api_request(request: Request, path: str) -> dict[str, Any] | JSONResponse:
        """What every Daraja API call goes through first, as Daraja answers it: an injected
        failure, the access token, a JSON object body (else the error answer to send)."""
        failure = await injected_failure(path)
        if failure:
            return failure
        if not bearer_ok(request):
            return _error(404, "404.001.03", "Invalid Access Token")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "400.002.02", "Bad Request - Invalid JSON")
        if not isinstance(body, dict):
            return _error(400, "400.002.02", "Bad Request - Invalid JSON")
        return body

    def check_password(body: dict[str, Any]) -> JSONResponse | None:
        if str(body.get("BusinessShortCode")) != state.shortcode:
            return _error(400, "400.002.02", "Bad Request - Invalid BusinessShortCode")
        timestamp = str(body.get("Timestamp", ""))
        if not TIMESTAMP.match(timestamp):
            return _error(400, "400.002.02", "Bad Request - Invalid Timestamp")
        expected = base64.b64encode(
            f"{state.shortcode}{state.passkey}{timestamp}".encode()
        ).decode()
        if body.get("Password") != expected:
            return _error(500, "500.001.1001", "Wrong credentials")
        return None

    @app.post("/mpesa/stkpush/v1/processrequest")
    async def stk_push(request: Request) -> JSONResponse:
        body = await api_request(request, "stkpush")
        if isinstance(body, JSONResponse):
            return body
        bad = check_password(body)
        if bad:
            return bad
        if body.get("TransactionType") not in ("CustomerPayBillOnline", "CustomerBuyGoodsOnline"):
            return _error(400, "400.002.02", "Bad Request - Invalid TransactionType")
        amount = body.get("Amount")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
            return _error(400, "400.002.02", "Bad Request - Invalid Amount")
        phone = str(body.get("PhoneNumber", ""))
        if not PHONE.match(phone) or str(body.get("PartyA")) != phone:
            return _error(400, "400.002.02", "Bad Request - Invalid PhoneNumber")
        callback_url = str(body.get("CallBackURL", ""))
        if not callback_url.startswith(("http://", "https://")):
            return _error(400, "400.002.02", "Bad Request - Invalid CallBackURL")
        if not body.get("AccountReference"):
            return _error(400, "400.002.02", "Bad Request - Invalid AccountReference")
        state.stk_pushes += 1
        held = state.holds[0] > 0
        if held:
            state.holds[0] -= 1
        callback_delay = state.holds[2] if held else state.callback_delay_seconds
        txn = StkTransaction(
            merchant_request_id=f"{secrets.randbelow(90000) + 10000}-{secrets.randbelow(10**8)}-1",
            checkout_request_id=f"ws_CO_{time.strftime('%d%m%Y%H%M%S')}{secrets.token_hex(6)}",
            phone=phone,
            amount=amount,
            callback_url=callback_url,
            outcome=outcome_for(phone),
            final_at=time.monotonic() + callback_delay,
            receipt=_receipt(),
        )
        state.transactions[txn.checkout_request_id] = txn
        if txn.outcome.callbacks:
            task = asyncio.create_task(send_callbacks(txn, callback_delay))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        log.info("stk push accepted", checkout=txn.checkout_request_id, phone=phone, amount=amount)
        if held:
            await asyncio.sleep(state.holds[1])
        if txn.outcome.answer_status is not None:
            status = txn.outcome.answer_status
            return _error(status, f"{status}.003.02", "injected failure after accepting the push")
        return JSONResponse(
            {
                "MerchantRequestID": txn.merchant_request_id,
                "CheckoutRequestID": txn.checkout_request_id,
                "ResponseCode": "0",
                "ResponseDescription": "Success. Request accepted for processing",
                "CustomerMessage": "Success. Request accepted for processing",
            }
        )

    def callback_body(txn: StkTransaction) -> dict[str, Any]:
        callback: dict[str, Any] = {
            "MerchantRequestID": txn.merchant_request_id,
            "CheckoutRequestID": txn.checkout_request_id,
            "ResultCode": txn.outcome.result_code,
            "ResultDesc": txn.outcome.result_desc,
        }
        if txn.outcome.result_code == 0:
            callback["CallbackMetadata"] = {
                "Item": [
                    {"Name": "Amount", "Value": float(txn.amount)},
                    {"Name": "MpesaReceiptNumber", "Value": txn.receipt},
                    {"Name": "Balance"},
                    {"Name": "TransactionDate", "Value": int(time.strftime("%Y%m%d%H%M%S"))},
                    {"Name": "PhoneNumber", "Value": int(txn.phone)},
                ]
            }
        return {"Body": {"stkCallback": callback}}

    async def send_callbacks(txn: StkTransaction, delay: float) -> None:
        await asyncio.sleep(delay)
        body = callback_body(txn)
        sends = [http.post(txn.callback_url, json=body) for _ in range(txn.outcome.callbacks)]
        for result in await asyncio.gather(*sends, return_exceptions=True):
            txn.callbacks_sent += 1
            if isinstance(result, BaseException):
                log.warning("callback failed", checkout=txn.checkout_request_id, error=str(result))
            else:
                log.info(
                    "callback sent", checkout=txn.checkout_request_id, status=result.status_code
                )

    @app.post("/mpesa/stkpushquery/v1/query")
    async def stk_query(request: Request) -> JSONResponse:
        body = await api_request(request, "stkpushquery")
        if isinstance(body, JSONResponse):
            return body
        bad = check_password(body)
        if bad:
            return bad
        txn = state.transactions.get(str(body.get("CheckoutRequestID")))
        if txn is None:
            return _error(400, "400.002.02", "Bad Request - Invalid CheckoutRequestID")
        if time.monotonic() < txn.final_at:
            return _error(500, "500.001.1001", "The transaction is being processed")
        return JSONResponse(
            {
                "ResponseCode": "0",
                "ResponseDescription": "The service request has been accepted successsfully",
                "MerchantRequestID": txn.merchant_request_id,
                "CheckoutRequestID": txn.checkout_request_id,
                "ResultCode": str(txn.outcome.result_code),
                "ResultDesc": txn.outcome.result_desc,
            }
        )

    def status_result(txn: StkTransaction | None, receipt: str, body: dict[str, Any]) -> Any:
        base = {
            "ResultType": 0,
            "OriginatorConversationID": str(body.get("OriginatorConversationID") or ""),
            "ConversationID": body["_conversation_id"],
            "TransactionID": receipt,
        }
        if txn is None or txn.outcome.result_code != 0 or time.monotonic() < txn.final_at:
            # the sandbox's own code and words for "no such completed transaction"
            return {
                "Result": {
                    **base,
                    "ResultCode": 1,
                    "ResultDesc": "No completed transaction found for this receipt",
                }
            }
        parameters = [
            {"Key": "ReceiptNo", "Value": txn.receipt},
            {"Key": "TransactionStatus", "Value": "Completed"},
            {"Key": "Amount", "Value": txn.amount},
            {"Key": "DebitPartyName", "Value": f"{txn.phone} - Sandbox Customer"},
            {"Key": "CreditPartyName", "Value": f"{state.shortcode} - Settle"},
            {"Key": "FinalisedTime", "Value": int(time.strftime("%Y%m%d%H%M%S"))},
        ]
        return {
            "Result": {
                **base,
                "ResultCode": 0,
                "ResultDesc": "The service request is processed successfully.",
                "ResultParameters": {"ResultParameter": parameters},
                "ReferenceData": {"ReferenceItem": {"Key": "Occasion", "Value": "deposit"}},
            }
        }

    async def send_status_result(url: str, result: Any) -> None:
        await asyncio.sleep(state.callback_delay_seconds)
        try:
            answer = await http.post(url, json=result)
            log.info("transaction status result sent", status=answer.status_code)
        except httpx.HTTPError as exc:
            log.warning("transaction status result failed", error=str(exc))

    @app.post("/mpesa/transactionstatus/v1/query")
    async def transaction_status(request: Request) -> JSONResponse:
        body = await api_request(request, "transactionstatus")
        if isinstance(body, JSONResponse):
            return body
        if body.get("CommandID") != "TransactionStatusQuery":
            return _error(400, "400.002.02", "Bad Request - Invalid CommandID")
        if str(body.get("PartyA")) != state.shortcode:
            return _error(400, "400.002.02", "Bad Request - Invalid PartyA")
        if not body.get("Initiator") or not body.get("SecurityCredential"):
            return _error(400, "400.002.02", "Bad Request - Invalid Initiator")
        result_url = str(body.get("ResultURL", ""))
        if not result_url.startswith(("http://", "https://")):
            return _error(400, "400.002.02", "Bad Request - Invalid ResultURL")
        receipt = str(body.get("TransactionID") or "")
        if not receipt:
            return _error(400, "400.002.02", "Bad Request - Invalid TransactionID")
        state.status_queries[receipt] = state.status_queries.get(receipt, 0) + 1
        txn = next((t for t in state.transactions.values() if t.receipt == receipt), None)
        body["_conversation_id"] = f"AG_{time.strftime('%Y%m%d')}_{secrets.token_hex(10)}"
        task = asyncio.create_task(
            send_status_result(result_url, status_result(txn, receipt, body))
        )
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return JSONResponse(
            {
                "OriginatorConversationID": str(body.get("OriginatorConversationID") or ""),
                "ConversationID": body["_conversation_id"],
                "ResponseCode": "0",
                "ResponseDescription": "Accept the service request successfully.",
            }
        )

    # --- test controls (not Daraja) ------------------------------------------------------------

    @app.post("/_sandbox/fail-next")
    async def fail_next(request: Request) -> dict[str, Any]:
        """``{"path": "stkpush", "count": 2, "status": 503}``: the next calls fail like that."""
        body = await request.json()
        state.failures[str(body["path"])] = [
            int(body.get("count", 1)),
            int(body.get("status", 503)),
        ]
        return {"ok": True}

    @app.post("/_sandbox/delay-next")
    async def delay_next(request: Request) -> dict[str, Any]:
        """``{"path": "stkpush", "count": 1, "seconds": 2}``: the next calls answer that late."""
        body = await request.json()
        state.delays[str(body["path"])] = [int(body.get("count", 1)), float(body["seconds"])]
        return {"ok": True}

    @app.post("/_sandbox/hold-answer")
    async def hold_answer(request: Request) -> dict[str, Any]:
        """``{"count": 1, "seconds": 60, "callback_delay_seconds": 8}``: the next STK pushes are
        accepted (the customer is prompted, the callback goes out after its delay) and their
        HTTP answer is held back that long, as when the caller dies before it arrives."""
        body = await request.json()
        state.holds = [
            int(body.get("count", 1)),
            float(body["seconds"]),
            float(body.get("callback_delay_seconds", state.callback_delay_seconds)),
        ]
        return {"ok": True}

    @app.get("/_sandbox/transactions")
    async def transactions() -> dict[str, Any]:
        return {
            "stk_pushes": state.stk_pushes,
            "tokens_issued": state.tokens_issued,
            "status_queries": state.status_queries,
            "transactions": [
                {
                    "checkout_request_id": t.checkout_request_id,
                    "phone": t.phone,
                    "amount": t.amount,
                    "result_code": t.outcome.result_code,
                    "receipt": t.receipt if t.outcome.result_code == 0 else None,
                    "callbacks_sent": t.callbacks_sent,
                }
                for t in state.transactions.values()
            ],
        }

    @app.post("/_sandbox/resend-callback/{checkout_request_id}")
    async def resend(checkout_request_id: str) -> dict[str, Any]:
        txn = state.transactions[checkout_request_id]
        response = await http.post(txn.callback_url, json=callback_body(txn))
        return {"status": response.status_code, "body": response.json()}

    @app.get("/_sandbox/callback-body/{checkout_request_id}")
    async def body_of(checkout_request_id: str) -> dict[str, Any]:
        return callback_body(state.transactions[checkout_request_id])

    return app
