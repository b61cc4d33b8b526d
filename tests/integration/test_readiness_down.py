"""With Temporal unreachable the API still starts, says it is not ready, and starts nothing."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select

from api.app import create_app
from sandbox.serve import serve
from store.db import make_engine
from store.models import MpesaDeposit
from tests.fixtures.stack import stack_settings


async def test_not_ready_and_503_when_temporal_is_down(database_url: str) -> None:
    settings = stack_settings(
        database_url, "http://127.0.0.1:9", "http://127.0.0.1:9", temporal_address="127.0.0.1:9"
    )
    server = await serve(create_app(settings))
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            from api.auth import issue_token

            ops = issue_token(settings, subject="ops", tenant="ops", roles=["platform_admin"])
            ready = await http.get("/health/ready", headers={"Authorization": f"Bearer {ops}"})
            assert ready.status_code == 503
            assert ready.json()["checks"]["temporal"]["status"] == "down"
            assert ready.json()["checks"]["database"]["status"] == "up"

            token = issue_token(settings, subject="x", tenant="down", roles=["user"])
            response = await http.post(
                "/api/v1/deposit/initiate",
                json={"phone": "254708374149", "amount": 10, "wallet_address": "0x" + "ab" * 20},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert response.status_code == 503
            assert "nothing was started" in response.json()["error"]["message"]
        engine = make_engine(database_url)
        async with engine.connect() as connection:
            rows = await connection.execute(
                select(func.count()).select_from(MpesaDeposit).where(MpesaDeposit.tenant == "down")
            )
            assert rows.scalar_one() == 0
        await engine.dispose()
    finally:
        await server.stop()
