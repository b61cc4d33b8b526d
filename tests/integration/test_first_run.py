"""A first run that works: the stack started as ``make run`` starts it, from an empty data folder,
runs one operation of each kind as soon as it first says it is ready; Ctrl-C then leaves no
database server running behind.

Found by a new user: right after the banner, the first deposit parked on the treasury's
``InsufficientBalance`` because the fresh chain funded the treasury 6 s later.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from eth_utils import keccak

from api.auth import issue_token
from providers.evm import EvmClient, LocalSigner
from providers.ipfs import IpfsGateway
from runtime.banner import DEMO_WALLET
from runtime.settings import Settings
from sandbox.chain import mint_usdc
from sandbox.content import SANDBOX_CREATOR_KEY, publish
from sandbox.local_stack import isolated_env
from sandbox.payer import Payer
from store.embedded import EmbeddedPostgres

ROOT = Path(__file__).resolve().parents[2]
READY_WITHIN_SECONDS = 180
DONE_WITHIN_SECONDS = 120


def settings_of(env: dict[str, str]) -> Settings:
    fields = Settings.model_fields
    values: dict[str, Any] = {k.lower(): v for k, v in env.items() if k.lower() in fields}
    return Settings(_env_file=None, **values)


async def first_ready(http: httpx.AsyncClient, process: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + READY_WITHIN_SECONDS
    while time.monotonic() < deadline:
        assert process.returncode is None, "the stack stopped before it was ready"
        try:
            if (await http.get("/health/ready")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.25)
    raise AssertionError(f"the stack was not ready within {READY_WITHIN_SECONDS} s")


async def until(
    read: Callable[[], Awaitable[httpx.Response]], done: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    deadline = time.monotonic() + DONE_WITHIN_SECONDS
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = await read()
        last = response.json()
        if done(last):
            return last
        await asyncio.sleep(0.5)
    raise AssertionError(f"{what} did not complete: {last}")


async def mpesa_deposit(http: httpx.AsyncClient, auth: dict[str, str]) -> dict[str, Any]:
    response = await http.post(
        "/api/v1/deposit/initiate",
        json={"phone": "254708374149", "amount": 150, "wallet_address": DEMO_WALLET},
        headers=auth,
    )
    assert response.status_code == 202, response.text
    deposit_id = response.json()["id"]
    return await until(
        lambda: http.get(f"/api/v1/deposit/{deposit_id}", headers=auth),
        lambda d: d["status"] in ("credited", "failed", "needs_attention"),
        "the M-Pesa deposit",
    )


async def onchain_deposit(
    http: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> dict[str, Any]:
    response = await http.post(
        "/api/v1/deposit/intent/create", json={"amount": "2.50", "chain": "base"}, headers=auth
    )
    assert response.status_code == 201, response.text
    intent = response.json()
    client = EvmClient(settings.evm_rpc_url, chain_id=settings.evm_chain_id)
    try:
        payer = Payer(client, settings.usdc_contract_address)
        deployer = LocalSigner(settings.sandbox_deployer_private_key)
        await mint_usdc(client, deployer, settings.usdc_contract_address, payer.address, 2_500_000)
        await payer.pay(intent["address"], 2_500_000)
    finally:
        await client.aclose()
    return await until(
        lambda: http.get(f"/api/v1/deposit/intent/{intent['id']}", headers=auth),
        lambda i: i["status"] not in ("open", "partially_paid"),
        "the on-chain deposit",
    )


async def ticket_purchase(
    http: httpx.AsyncClient, auth: dict[str, str], venue: dict[str, str]
) -> dict[str, Any]:
    created = await http.post(
        "/api/v1/events",
        json={
            "name": "First run",
            "venue": "Hall",
            "starts_at": (datetime.now(UTC) + timedelta(days=7)).isoformat(),
            "currency": "usd",
            "sections": [{"code": "FLOOR", "price": 2500, "capacity": 10}],
        },
        headers=venue,
    )
    assert created.status_code == 201, created.text
    response = await http.post(
        "/api/v1/tickets/purchase",
        json={
            "event_id": created.json()["id"],
            "section": "FLOOR",
            "payment_method": "pm_card_visa",
            "buyer_email": "first-run@example.com",
            "buyer_wallet": "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin",
        },
        headers=auth,
    )
    assert response.status_code == 202, response.text
    purchase_id = response.json()["id"]
    return await until(
        lambda: http.get(f"/api/v1/tickets/purchase/{purchase_id}", headers=auth),
        lambda p: p["status"] in ("completed", "failed", "payment_failed", "needs_attention"),
        "the ticket purchase",
    )


async def credential_anchor(http: httpx.AsyncClient, auth: dict[str, str]) -> dict[str, Any]:
    path = f"/api/v1/credentials/first-run-{uuid.uuid4().hex[:8]}/anchor"
    body = {
        "data_hash": "0x" + keccak(text="first run").hex(),
        "ipfs_cid": "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
    }
    response = await http.post(path, json=body, headers=auth)
    assert response.status_code == 202, response.text
    return await until(
        lambda: http.get(path, headers=auth),
        lambda a: a["status"] in ("confirmed", "failed"),
        "the credential anchor",
    )


async def verification(
    http: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> dict[str, Any]:
    data = b"a diploma for the first run\n" * 20
    client = EvmClient(settings.evm_rpc_url, chain_id=settings.evm_chain_id)
    gateway = IpfsGateway(settings.ipfs_gateway_url, timeout_seconds=10, max_bytes=1 << 20)
    try:
        published = await publish(
            client, gateway, settings.content_registry_address, SANDBOX_CREATOR_KEY, data
        )
    finally:
        await gateway.aclose()
        await client.aclose()
    response = await http.post(
        "/api/verification-jobs/verify",
        files={"file": ("diploma.txt", data, "text/plain")},
        data={
            "registryAddress": settings.content_registry_address,
            "manifestURI": published.manifest_uri,
        },
        headers=auth,
    )
    assert response.status_code in (200, 202), response.text
    job_id = response.json()["jobId"]
    return await until(
        lambda: http.get(f"/api/verification-jobs/{job_id}", headers=auth),
        lambda j: j["status"] in ("completed", "failed"),
        "the verification job",
    )


async def stop(process: asyncio.subprocess.Process) -> int:
    """Ctrl-C: SIGINT to the whole process group, as a terminal sends it."""
    os.killpg(process.pid, signal.SIGINT)
    try:
        return await asyncio.wait_for(process.wait(), 60)
    except TimeoutError:
        os.killpg(process.pid, signal.SIGKILL)
        raise


async def test_first_run_from_an_empty_data_folder(tmp_path: Path) -> None:
    workdir = tmp_path / "data"
    env = isolated_env(workdir)
    settings = settings_of(env)
    log_path = tmp_path / "stack.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "runtime.stack",
            "run",
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        async with httpx.AsyncClient(base_url=settings.api_public_url, timeout=30) as http:
            await first_ready(http, process)
            tenant = f"first-{uuid.uuid4().hex[:6]}"
            user = {
                "Authorization": "Bearer "
                + issue_token(settings, subject="ada", tenant=tenant, roles=["user"])
            }
            venue = {
                "Authorization": "Bearer "
                + issue_token(settings, subject="vic", tenant=tenant, roles=["venue_admin"])
            }
            deposit, intent, ticket, anchor, verified = await asyncio.gather(
                mpesa_deposit(http, user),
                onchain_deposit(http, user, settings),
                ticket_purchase(http, user, venue),
                credential_anchor(http, user),
                verification(http, user, settings),
            )
    except BaseException:
        await stop(process)
        print(log_path.read_text(errors="replace")[-60000:])
        raise
    assert deposit["status"] == "credited", deposit
    assert intent["status"] == "paid", intent
    assert ticket["status"] == "completed", ticket
    assert anchor["status"] == "confirmed", anchor
    assert verified["status"] == "completed" and verified["result"]["status"] == "verified", (
        verified
    )

    await stop(process)
    database = EmbeddedPostgres(workdir / "postgres", int(env["EMBEDDED_POSTGRES_PORT"]))
    assert not database.is_running(), "Ctrl-C left the embedded PostgreSQL running"
    pid_file = workdir / "postgres" / "postmaster.pid"
    for _ in range(50):  # the server's last step of a fast shutdown removes it
        if not pid_file.exists():
            break
        await asyncio.sleep(0.1)
    assert not pid_file.exists(), (
        "a stale lock was left:\n"
        + log_path.read_text(errors="replace")[-3000:]
        + database.log_file.read_text(errors="replace")[-3000:]
    )
