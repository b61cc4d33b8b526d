"""The API process holds no private key (issue 13 §3): with the treasury key, the Solana
authority keypair and the seed phrase left empty, and only their public counterparts set, the API
starts, hands out the same deposit addresses the phrase gives, and reads the wallet balances."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families
from solders.keypair import Keypair

from api.app import create_app
from providers.evm import LocalSigner
from providers.evm.hd import HdWallet
from providers.evm.xpub import xpub_from_mnemonic
from sandbox.serve import serve
from store.models import DepositIntent
from tests.fixtures.stack import Stack, unique_tenant


async def test_the_api_runs_on_public_keys_only(stack: Stack) -> None:
    real = stack.settings
    mnemonic = real.deposit_hd_mnemonic.get_secret_value()
    public_only = real.model_copy(
        update={
            "treasury_private_key": type(real.treasury_private_key)(""),
            "solana_authority_keypair": type(real.solana_authority_keypair)(""),
            "deposit_hd_mnemonic": type(real.deposit_hd_mnemonic)(""),
            "treasury_address": LocalSigner(real.treasury_private_key.get_secret_value()).address,
            "solana_authority_pubkey": str(
                Keypair.from_base58_string(
                    real.solana_authority_keypair.get_secret_value()
                ).pubkey()
            ),
            "deposit_xpub": xpub_from_mnemonic(mnemonic),
        }
    )
    server = await serve(create_app(public_only, temporal=stack.temporal))
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as api:
            headers = stack.auth("kim", unique_tenant())
            created = await api.post(
                "/api/v1/deposit/intent/create",
                json={"amount": "1.50", "chain": real.evm_chain},
                headers=headers,
            )
            assert created.status_code == 201, created.text
            scraped = await api.get("/metrics", headers=stack.platform_admin())
    finally:
        await server.stop()
    async with stack.sessions() as session:
        row = await session.get(DepositIntent, created.json()["id"])
    assert row is not None
    assert created.json()["address"] == row.address == HdWallet(mnemonic).address(row.hd_index)
    samples = {
        family.name: family.samples[0].value
        for family in text_string_to_metric_families(scraped.text)
        if family.name in ("solana_wallet_balance_sol", "evm_treasury_usdc_balance")
    }
    assert samples["solana_wallet_balance_sol"] > 0 and samples["evm_treasury_usdc_balance"] > 0
