"""MPESA_CALLBACK_ALLOWED_IPS: callbacks from outside the allow-list are refused and change nothing."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import func, select
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from sandbox.serve import serve
from store.db import make_engine
from store.models import MpesaCallbackRecord
from tests.fixtures.stack import stack_settings

CALLBACK = {
    "Body": {
        "stkCallback": {
            "MerchantRequestID": "m-1",
            "CheckoutRequestID": "ws_CO_allowlist",
            "ResultCode": 1032,
            "ResultDesc": "Request cancelled by user",
        }
    }
}


async def stored(database_url: str, checkout: str) -> int:
    engine = make_engine(database_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                select(func.count())
                .select_from(MpesaCallbackRecord)
                .where(MpesaCallbackRecord.checkout_request_id == checkout)
            )
            return int(rows.scalar_one())
    finally:
        await engine.dispose()


@pytest.mark.parametrize(("allowed", "expected"), [(["10.0.0.0/8"], 403), (["127.0.0.0/8"], 200)])
async def test_allow_list(
    database_url: str, dev_env: WorkflowEnvironment, allowed: list[str], expected: int
) -> None:
    settings = stack_settings(
        database_url, "http://127.0.0.1:9", "http://127.0.0.1:9", mpesa_callback_allowed_ips=allowed
    )
    server = await serve(create_app(settings, temporal=dev_env.client))
    checkout = f"ws_CO_allow_{expected}"
    body = json.loads(json.dumps(CALLBACK))
    body["Body"]["stkCallback"]["CheckoutRequestID"] = checkout
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            token = settings.mpesa_callback_token.get_secret_value()
            response = await http.post(f"/api/v1/deposit/mpesa-callback/{token}", json=body)
        assert response.status_code == expected, response.text
        assert await stored(database_url, checkout) == (1 if expected == 200 else 0)
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("trusted", "expected"), [([], 403), (["127.0.0.0/8"], 200)], ids=["no-proxy", "trusted-proxy"]
)
async def test_forwarded_for_counts_only_from_a_trusted_proxy(
    database_url: str, dev_env: WorkflowEnvironment, trusted: list[str], expected: int
) -> None:
    """A caller writing Safaricom's address in X-Forwarded-For is judged by its own address,
    unless it is a proxy listed in TRUSTED_PROXY_IPS."""
    settings = stack_settings(
        database_url,
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        mpesa_callback_allowed_ips=["196.201.214.200"],
        trusted_proxy_ips=trusted,
    )
    server = await serve(create_app(settings, temporal=dev_env.client))
    checkout = f"ws_CO_xff_{expected}_{len(trusted)}"
    body = json.loads(json.dumps(CALLBACK))
    body["Body"]["stkCallback"]["CheckoutRequestID"] = checkout
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            token = settings.mpesa_callback_token.get_secret_value()
            response = await http.post(
                f"/api/v1/deposit/mpesa-callback/{token}",
                json=body,
                headers={"X-Forwarded-For": "196.201.214.200"},
            )
        assert response.status_code == expected, response.text
        assert await stored(database_url, checkout) == (1 if expected == 200 else 0)
    finally:
        await server.stop()
