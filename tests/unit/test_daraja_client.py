"""The Daraja client against an ``httpx.MockTransport``: wire format, token cache, error mapping."""

from __future__ import annotations

import base64
import json
from datetime import datetime

import httpx
import pytest

from domain.errors import (
    DarajaAuthError,
    DarajaCallbackInvalid,
    DarajaError,
    DarajaPushUnknown,
    DarajaRateLimited,
    DarajaRejected,
    DarajaUnavailable,
)
from providers.daraja import (
    NAIROBI,
    DarajaClient,
    parse_stk_callback,
    parse_transaction_status_result,
    stk_password,
)

FIXED_NOW = datetime(2026, 11, 24, 9, 30, 15, tzinfo=NAIROBI)


class FakeDaraja:
    def __init__(self) -> None:
        self.token_calls = 0
        self.requests: list[httpx.Request] = []
        self.push_answers: list[httpx.Response] = []
        self.query_answers: list[httpx.Response] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/oauth/v1/generate":
            self.token_calls += 1
            return httpx.Response(
                200, json={"access_token": f"tok{self.token_calls}", "expires_in": "3599"}
            )
        if request.url.path == "/mpesa/stkpush/v1/processrequest":
            if self.push_answers:
                return self.push_answers.pop(0)
            return httpx.Response(
                200,
                json={
                    "MerchantRequestID": "29115-34620561-1",
                    "CheckoutRequestID": "ws_CO_191220191020363925",
                    "ResponseCode": "0",
                    "ResponseDescription": "Success. Request accepted for processing",
                    "CustomerMessage": "Success. Request accepted for processing",
                },
            )
        if request.url.path == "/mpesa/stkpushquery/v1/query":
            return self.query_answers.pop(0)
        return httpx.Response(404)


def make_client(fake: FakeDaraja, clock: list[float] | None = None) -> DarajaClient:
    ticks = clock if clock is not None else [0.0]
    return DarajaClient(
        base_url="https://daraja.test",
        consumer_key="key",
        consumer_secret="secret",
        shortcode="174379",
        passkey="pass",
        http=httpx.AsyncClient(
            base_url="https://daraja.test", transport=httpx.MockTransport(fake.handler)
        ),
        clock=lambda: ticks[0],
        now=lambda: FIXED_NOW,
    )


async def push(client: DarajaClient):
    return await client.stk_push(
        phone="254708374149",
        amount_kes=150,
        callback_url="https://settle.test/cb/x",
        account_reference="Settle",
        description="deposit",
    )


async def test_stk_push_sends_the_daraja_wire_format() -> None:
    fake = FakeDaraja()
    result = await push(make_client(fake))
    assert result.checkout_request_id == "ws_CO_191220191020363925"
    oauth, stk = fake.requests
    assert oauth.headers["authorization"] == "Basic " + base64.b64encode(b"key:secret").decode()
    assert oauth.url.params["grant_type"] == "client_credentials"
    body = json.loads(stk.content)
    assert stk.headers["authorization"] == "Bearer tok1"
    assert body["Timestamp"] == "20261124093015"
    assert body["Password"] == base64.b64encode(b"174379pass20261124093015").decode()
    assert body["Password"] == stk_password("174379", "pass", "20261124093015")
    assert body["TransactionType"] == "CustomerPayBillOnline"
    assert body["Amount"] == 150
    assert body["PartyA"] == body["PhoneNumber"] == "254708374149"
    assert body["PartyB"] == body["BusinessShortCode"] == "174379"
    assert body["CallBackURL"] == "https://settle.test/cb/x"


async def test_token_is_cached_until_shortly_before_expiry() -> None:
    fake, clock = FakeDaraja(), [0.0]
    client = make_client(fake, clock)
    await push(client)
    await push(client)
    assert fake.token_calls == 1
    clock[0] = 3599 - 60 + 1  # inside the refresh margin
    await push(client)
    assert fake.token_calls == 2


async def test_rejected_token_is_refetched_once() -> None:
    fake = FakeDaraja()
    fake.push_answers.append(
        httpx.Response(
            404,
            json={
                "requestId": "r",
                "errorCode": "404.001.03",
                "errorMessage": "Invalid Access Token",
            },
        )
    )
    result = await push(make_client(fake))
    assert result.checkout_request_id.startswith("ws_CO_")
    assert fake.token_calls == 2


@pytest.mark.parametrize(
    ("status", "error_code", "expected"),
    [
        (400, "400.002.02", DarajaRejected),
        (500, "500.003.02", DarajaUnavailable),
        (503, "503.001.01", DarajaUnavailable),
        (429, "429.000.01", DarajaRateLimited),
    ],
)
async def test_errors_map_to_typed_exceptions(status: int, error_code: str, expected: type) -> None:
    fake = FakeDaraja()
    fake.push_answers.append(
        httpx.Response(status, json={"errorCode": error_code, "errorMessage": "no"})
    )
    with pytest.raises(expected) as info:
        await push(make_client(fake))
    assert isinstance(info.value, DarajaError)
    assert info.value.error_code == error_code


async def test_bad_credentials_are_an_auth_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            400, json={"errorCode": "400.008.01", "errorMessage": "Invalid Authentication passed"}
        )

    client = DarajaClient(
        base_url="https://d.test",
        consumer_key="k",
        consumer_secret="s",
        shortcode="1",
        passkey="p",
        http=httpx.AsyncClient(base_url="https://d.test", transport=httpx.MockTransport(handler)),
    )
    with pytest.raises(DarajaAuthError):
        await client.access_token()


async def test_connection_failure_is_retryable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    client = DarajaClient(
        base_url="https://d.test",
        consumer_key="k",
        consumer_secret="s",
        shortcode="1",
        passkey="p",
        http=httpx.AsyncClient(base_url="https://d.test", transport=httpx.MockTransport(handler)),
    )
    with pytest.raises(DarajaUnavailable):
        await client.access_token()


async def test_query_pending_then_final() -> None:
    fake = FakeDaraja()
    fake.query_answers += [
        httpx.Response(
            500,
            json={
                "requestId": "r",
                "errorCode": "500.001.1001",
                "errorMessage": "The transaction is being processed",
            },
        ),
        httpx.Response(
            200,
            json={
                "ResponseCode": "0",
                "ResultCode": "1032",
                "ResultDesc": "Request cancelled by user",
            },
        ),
    ]
    client = make_client(fake)
    first = await client.stk_query("ws_CO_1")
    assert first.pending and first.result_code is None
    second = await client.stk_query("ws_CO_1")
    assert not second.pending and second.result_code == 1032


def success_body(**overrides) -> dict:
    callback = {
        "MerchantRequestID": "29115-34620561-1",
        "CheckoutRequestID": "ws_CO_191220191020363925",
        "ResultCode": 0,
        "ResultDesc": "The service request is processed successfully.",
        "CallbackMetadata": {
            "Item": [
                {"Name": "Amount", "Value": 1.00},
                {"Name": "MpesaReceiptNumber", "Value": "NLJ7RT61SV"},
                {"Name": "TransactionDate", "Value": 20191219102115},
                {"Name": "PhoneNumber", "Value": 254708374149},
            ]
        },
    }
    callback.update(overrides)
    return {"Body": {"stkCallback": callback}}


def test_parse_success_callback_from_daraja_docs() -> None:
    parsed = parse_stk_callback(success_body())
    assert parsed.receipt == "NLJ7RT61SV"
    assert parsed.amount_minor == 100
    assert parsed.phone == "254708374149"
    assert parsed.result_code == 0


def test_parse_failure_callback_needs_no_metadata() -> None:
    body = {
        "Body": {
            "stkCallback": {
                "MerchantRequestID": "m",
                "CheckoutRequestID": "c",
                "ResultCode": 1032,
                "ResultDesc": "Request cancelled by user",
            }
        }
    }
    parsed = parse_stk_callback(body)
    assert parsed.result_code == 1032 and parsed.receipt is None


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"Body": {"stkCallback": None}},
        success_body(ResultCode=True),
        success_body(CheckoutRequestID=""),
        success_body(
            CallbackMetadata={
                "Item": [
                    {"Name": "Amount", "Value": 0},
                    {"Name": "MpesaReceiptNumber", "Value": "X"},
                ]
            }
        ),
        success_body(
            CallbackMetadata={
                "Item": [
                    {"Name": "Amount", "Value": 1.001},
                    {"Name": "MpesaReceiptNumber", "Value": "X"},
                ]
            }
        ),
    ],
)
def test_parse_rejects_malformed_callbacks(body: dict) -> None:
    with pytest.raises(DarajaCallbackInvalid):
        parse_stk_callback(body)


# --- a push whose answer was lost; Transaction Status (issue 12, section 1) ---------------------


@pytest.mark.parametrize("status", [500, 503])
async def test_push_answered_with_a_5xx_may_have_prompted(status: int) -> None:
    fake = FakeDaraja()
    fake.push_answers.append(httpx.Response(status, json={"errorCode": "x", "errorMessage": "no"}))
    with pytest.raises(DarajaPushUnknown):
        await push(make_client(fake))


async def test_push_timing_out_may_have_prompted() -> None:
    fake = FakeDaraja()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/mpesa/stkpush/v1/processrequest":
            raise httpx.ReadTimeout("no answer", request=request)
        return fake.handler(request)

    client = make_client(fake)
    client._http = httpx.AsyncClient(
        base_url="https://daraja.test", transport=httpx.MockTransport(handler)
    )
    with pytest.raises(DarajaPushUnknown):
        await push(client)


async def test_push_that_could_not_connect_never_left() -> None:
    fake = FakeDaraja()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/mpesa/stkpush/v1/processrequest":
            raise httpx.ConnectError("refused", request=request)
        return fake.handler(request)

    client = make_client(fake)
    client._http = httpx.AsyncClient(
        base_url="https://daraja.test", transport=httpx.MockTransport(handler)
    )
    with pytest.raises(DarajaUnavailable) as info:
        await push(client)
    assert not isinstance(info.value, DarajaPushUnknown)


async def test_transaction_status_sends_the_daraja_wire_format() -> None:
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/v1/generate":
            return httpx.Response(200, json={"access_token": "tok", "expires_in": "3599"})
        seen.append(json.loads(request.content))
        return httpx.Response(
            200,
            json={
                "OriginatorConversationID": "settle-d1-1",
                "ConversationID": "AG_20261201_0001",
                "ResponseCode": "0",
                "ResponseDescription": "Accept the service request successfully.",
            },
        )

    client = DarajaClient(
        base_url="https://d.test",
        consumer_key="k",
        consumer_secret="s",
        shortcode="174379",
        passkey="p",
        initiator_name="settle-api",
        security_credential="encrypted",
        http=httpx.AsyncClient(base_url="https://d.test", transport=httpx.MockTransport(handler)),
    )
    requested = await client.transaction_status(
        receipt="SKX1234567",
        result_url="https://settle.test/r/d1",
        timeout_url="https://settle.test/r/d1/timeout",
        originator_id="settle-d1-1",
    )
    assert requested.conversation_id == "AG_20261201_0001"
    body = seen[0]
    assert body["CommandID"] == "TransactionStatusQuery"
    assert body["TransactionID"] == "SKX1234567" and body["PartyA"] == "174379"
    assert body["Initiator"] == "settle-api" and body["SecurityCredential"] == "encrypted"
    assert body["ResultURL"] == "https://settle.test/r/d1"
    assert body["QueueTimeOutURL"] == "https://settle.test/r/d1/timeout"


def test_parse_transaction_status_result() -> None:
    result = parse_transaction_status_result(
        {
            "Result": {
                "ResultType": 0,
                "ResultCode": 0,
                "ResultDesc": "The service request is processed successfully.",
                "OriginatorConversationID": "settle-d1-1",
                "ConversationID": "AG_20261201_0001",
                "TransactionID": "SKX1234567",
                "ResultParameters": {
                    "ResultParameter": [
                        {"Key": "ReceiptNo", "Value": "SKX1234567"},
                        {"Key": "TransactionStatus", "Value": "Completed"},
                        {"Key": "Amount", "Value": 150},
                    ]
                },
            }
        }
    )
    assert (result.result_code, result.receipt, result.amount_minor) == (0, "SKX1234567", 15000)
    assert result.transaction_status == "Completed" and not result.timed_out


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"Result": {"ResultCode": 0}},
        {"Result": {"ResultCode": "x", "OriginatorConversationID": "o", "ConversationID": "c"}},
        {
            "Result": {
                "ResultCode": 0,
                "OriginatorConversationID": "o",
                "ConversationID": "c",
                "ResultParameters": {"ResultParameter": [{"Key": "Amount", "Value": "abc"}]},
            }
        },
    ],
)
def test_parse_transaction_status_result_refuses_malformed(body: dict) -> None:
    with pytest.raises(DarajaCallbackInvalid):
        parse_transaction_status_result(body)
