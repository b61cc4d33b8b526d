"""The local EVM chain: anvil (from npm, under ``.tools/``) with Settle's contracts deployed.

``python -m sandbox.chain`` is the ``chain`` process of ``make run``: it starts anvil with its
state in ``SANDBOX_ANVIL_STATE_FILE`` (loaded at start, dumped on exit, so the next run keeps
balances and contracts), deploys what is missing and funds the treasury, then waits. Tests use
:func:`start_anvil` and :func:`bootstrap` directly.

Deployments are deterministic: anvil's account #0 deploys MockUSDC as its first transaction, so
it always lands at ``SANDBOX_USDC_ADDRESS`` and settings can name it without a lookup.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_utils import to_checksum_address

from providers.evm import EvmClient, LocalSigner
from providers.evm.artifacts import bytecode
from providers.evm.erc20 import Erc20
from runtime.logging import configure_logging, get_logger
from runtime.settings import Settings, get_settings

log = get_logger("sandbox.chain")

ROOT = Path(__file__).resolve().parents[1]
ANVIL = ROOT / ".tools" / "node_modules" / ".bin" / "anvil"
MINT_SELECTOR = "0x40c10f19"  # mint(address,uint256)


@dataclass
class Anvil:
    process: asyncio.subprocess.Process
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        """SIGTERM, so anvil dumps its state file when it has one."""
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 15)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start_anvil(
    *,
    port: int = 0,
    chain_id: int = 31337,
    block_time: float | None = 2.0,
    state_file: str | None = None,
    extra_args: list[str] | None = None,
) -> Anvil:
    """Start anvil and wait until it answers JSON-RPC. ``block_time=None`` mines on demand."""
    if not ANVIL.exists():
        raise RuntimeError("anvil is not installed: run `make tools`")
    port = port or free_port()
    argv = [
        str(ANVIL),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--chain-id",
        str(chain_id),
        "--silent",
    ]
    if block_time:
        argv += ["--block-time", str(block_time)]
    if state_file:
        Path(state_file).parent.mkdir(parents=True, exist_ok=True)
        argv += ["--state", state_file]
    argv += extra_args or []
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    anvil = Anvil(process, port)
    client = EvmClient(anvil.url, chain_id=chain_id, timeout_seconds=2)
    try:
        for _ in range(200):
            if process.returncode is not None:
                raise RuntimeError(f"anvil exited with {process.returncode}")
            try:
                await client.ensure_chain()
                return anvil
            except Exception:
                await asyncio.sleep(0.05)
        raise RuntimeError("anvil did not answer in 10 s")
    finally:
        await client.aclose()


async def _send(client: EvmClient, signer: LocalSigner, tx: dict[str, Any]) -> dict[str, Any]:
    tx = {
        "chainId": client.chain_id,
        "nonce": await client.nonce(signer.address),
        "value": 0,
        **tx,
    }
    fees = await client.fee_quote(priority_gwei=1, max_fee_gwei=1000)
    tx.setdefault(
        "gas",
        await client.estimate_gas(
            {k: v for k, v in tx.items() if k in ("to", "data", "value")} | {"from": signer.address}
        ),
    )
    tx |= {
        "maxFeePerGas": fees.max_fee_per_gas,
        "maxPriorityFeePerGas": fees.max_priority_fee_per_gas,
        "type": 2,
    }
    tx_hash = await client.send_raw(signer.sign(tx).raw)
    for _ in range(600):
        receipt = await client.receipt(tx_hash)
        if receipt is not None:
            if int(receipt["status"], 16) != 1:
                raise RuntimeError(f"sandbox transaction {tx_hash} reverted")
            return receipt
        await asyncio.sleep(0.05)
    raise RuntimeError(f"sandbox transaction {tx_hash} not mined")


async def deploy(
    client: EvmClient, signer: LocalSigner, contract: str, constructor_args: str = ""
) -> str:
    """Deploy a compiled contract from ``contracts/build``; returns its address."""
    receipt = await _send(client, signer, {"data": bytecode(contract) + constructor_args})
    return to_checksum_address(receipt["contractAddress"])


async def has_code(client: EvmClient, address: str) -> bool:
    return str(await client.rpc("eth_getCode", [address, "latest"])) not in ("0x", "0x0")


async def mint_usdc(
    client: EvmClient, owner: LocalSigner, usdc: str, to: str, amount_minor: int
) -> None:
    data = (
        MINT_SELECTOR + to.lower().removeprefix("0x").rjust(64, "0") + format(amount_minor, "064x")
    )
    await _send(client, owner, {"to": usdc, "data": data})


@dataclass(frozen=True)
class ChainSetup:
    usdc: str
    treasury: str
    deployed: bool


async def deploy_first_contract(
    client: EvmClient,
    deployer_key: str,
    contract: str,
    expected: str,
    setting: str,
    constructor_args: str = "",
) -> bool:
    """``contract`` as its deployer's first transaction, so it lands at ``expected`` (the
    default of ``setting``) on any fresh chain; True when it was deployed now."""
    expected = to_checksum_address(expected)
    if await has_code(client, expected):
        return False
    deployer = LocalSigner(deployer_key)
    if await client.nonce(deployer.address) != 0:
        raise RuntimeError(
            f"{contract} is not at {expected} and its deployer has already sent transactions: "
            f"start from an empty chain (delete the anvil state file) or set {setting}"
        )
    address = await deploy(client, deployer, contract, constructor_args)
    if address != expected:
        raise RuntimeError(f"{contract} landed at {address}, expected {expected}")
    return True


async def deploy_registry(client: EvmClient, settings: Settings, issuer: str) -> bool:
    """CredentialRegistry (account #2's first contract), with the treasury as its issuer."""
    return await deploy_first_contract(
        client,
        settings.sandbox_registry_deployer_private_key,
        "CredentialRegistry",
        settings.credential_registry_address,
        "CREDENTIAL_REGISTRY_ADDRESS",
        issuer.lower()[2:].rjust(64, "0"),
    )


async def deploy_content_registry(client: EvmClient, settings: Settings) -> bool:
    """ContentRegistry (account #3's first contract). It has no owner: anyone registers their
    own content."""
    return await deploy_first_contract(
        client,
        settings.sandbox_content_registry_deployer_private_key,
        "ContentRegistry",
        settings.content_registry_address,
        "CONTENT_REGISTRY_ADDRESS",
    )


async def deploy_disperse(client: EvmClient, settings: Settings) -> bool:
    """Disperse (account #7's first contract): batched payouts. No owner, holds nothing."""
    return await deploy_first_contract(
        client,
        settings.sandbox_disperse_deployer_private_key,
        "Disperse",
        settings.payout_disperse_address,
        "PAYOUT_DISPERSE_ADDRESS",
    )


async def bootstrap(rpc_url: str, settings: Settings) -> ChainSetup:
    """Deploy MockUSDC and the registries at their deterministic addresses when missing, and fund
    the treasury."""
    client = EvmClient(rpc_url, chain_id=settings.evm_chain_id)
    try:
        await client.ensure_chain()
        deployer = LocalSigner(settings.sandbox_deployer_private_key)
        treasury = Account.from_key(settings.treasury_private_key.get_secret_value()).address
        usdc = to_checksum_address(settings.usdc_contract_address)
        deployed = await deploy_first_contract(
            client, settings.sandbox_deployer_private_key, "MockUSDC", usdc, "USDC_CONTRACT_ADDRESS"
        )
        await deploy_registry(client, settings, treasury)
        await deploy_content_registry(client, settings)
        await deploy_disperse(client, settings)
        token = Erc20(client, usdc)
        if await token.balance_of(treasury) == 0:
            await mint_usdc(
                client, deployer, usdc, treasury, settings.sandbox_treasury_usdc * 10**6
            )
        return ChainSetup(usdc=usdc, treasury=treasury, deployed=deployed)
    finally:
        await client.aclose()


async def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    anvil = await start_anvil(
        port=settings.sandbox_anvil_port,
        chain_id=settings.evm_chain_id,
        block_time=settings.sandbox_anvil_block_time,
        state_file=settings.sandbox_anvil_state_file,
    )
    setup = await bootstrap(anvil.url, settings)
    log.info(
        "sandbox chain ready",
        rpc=anvil.url,
        chain_id=settings.evm_chain_id,
        usdc=setup.usdc,
        treasury=setup.treasury,
        freshly_deployed=setup.deployed,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waiter = asyncio.create_task(anvil.process.wait())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
    with contextlib.suppress(ProcessLookupError):
        await anvil.stop()  # dumps the state file


if __name__ == "__main__":
    asyncio.run(main())
    os._exit(0)
