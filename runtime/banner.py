"""``python -m runtime.banner``: wait until the stack answers, then say where to look.

Runs as the last Procfile entry and then idles (honcho stops everything when one process exits).
"""

from __future__ import annotations

import asyncio
import time

import httpx

from api.auth import issue_token
from runtime.settings import Settings, get_settings


async def wait_ready(settings: Settings, timeout_seconds: float = 120.0) -> bool:
    url = f"http://{settings.api_host}:{settings.api_port}/health/ready"
    deadline = time.monotonic() + timeout_seconds
    async with httpx.AsyncClient(timeout=3) as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(url)).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            await asyncio.sleep(1)
    return False


#: anvil's account #3: any address works, this one is easy to look up on the local chain
DEMO_WALLET = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"


def banner(settings: Settings, ready: bool) -> str:
    api = f"http://{settings.api_host}:{settings.api_port}"
    token = issue_token(settings, subject="alice", tenant="t1", roles=["user"])
    ops = issue_token(settings, subject="ops", tenant="t1", roles=["admin"])
    codec = settings.dev_server_ui_codec_endpoint or f"{api}/codec"
    state = (
        "Settle is up." if ready else "Settle did not become ready in time: read the logs above."
    )
    return f"""
==================================================================================
 {state}
   Temporal Web UI   {settings.temporal_ui_url}
   API (OpenAPI)     {api}/docs
   API health        {api}/health/ready
   Worker metrics    http://{settings.worker_metrics_bind}/metrics
   Sandbox Daraja    http://{settings.sandbox_host}:{settings.sandbox_daraja_port}/_sandbox/transactions
   Local chain       {settings.evm_rpc_url} (anvil, chain id {settings.evm_chain_id})
   USDC contract     {settings.usdc_contract_address}
   Sandbox Stripe    {settings.stripe_api_base} (webhooks to /webhooks/stripe)
   Sandbox Solana    {settings.solana_rpc_url} (LiteSVM, Token-2022)
   Caught emails     {settings.sandbox_mail_dir}/ (SMTP on port {settings.sandbox_smtp_port})
   Sandbox IPFS      {settings.ipfs_gateway_url}/ipfs/<cid> (serves {settings.sandbox_ipfs_dir}/)
   ContentRegistry   {settings.content_registry_address}

 A token for alice (tenant t1), valid 12 h:
   export TOKEN={token}
 Start a deposit, then watch it in the Web UI:
   curl -s -X POST {api}/api/v1/deposit/initiate -H "Authorization: Bearer $TOKEN" \\
        -H 'Content-Type: application/json' \\
        -d '{{"phone": "254708374149", "amount": 150, "wallet_address": "{DEMO_WALLET}"}}'
   curl -s {api}/api/v1/portfolio -H "Authorization: Bearer $TOKEN"
 Payloads in Temporal are encrypted; an admin reads them through the API's codec server:
   export OPS={ops}
   .venv/bin/temporal workflow show -w <workflow id> \\
        --codec-endpoint {codec} --codec-auth "Bearer $OPS"
 Verify a file: `.venv/bin/python -m sandbox.content publish <file>` signs, publishes and
   registers it, and prints the curl for POST /api/verification-jobs/verify.
 Ctrl-C stops everything; data stays in .data/ for the next `make run`.
==================================================================================
"""


async def main() -> None:
    settings = get_settings()
    ready = await wait_ready(settings)
    print(banner(settings, ready), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
